"""xmppd.muc.features.message_moderation: moderators retract messages (XEP-0425)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from tests.muc_fakes import JULIET, NURSE, ROMEO, ROOM, MUCHarness, error_condition
from tests.test_muc_features_archive import ArchiveTestCase, body_text, stanza_ids
from xmppd.muc.features.message_moderation import (
    NS_FASTEN,
    NS_MODERATE,
    NS_MODERATE_0,
    NS_RETRACT,
)

NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"


def moderate(stanza_id, reason="spam", retract=True):
    inner = f"<retract xmlns='{NS_RETRACT}'/>" if retract else ""
    if reason:
        inner += f"<reason>{reason}</reason>"
    id_attr = f" id='{stanza_id}'" if stanza_id is not None else ""
    return f"<moderate xmlns='{NS_MODERATE}'{id_attr}>{inner}</moderate>"


class ModerationTests(ArchiveTestCase):
    def spoken(self, body="rude"):
        """Juliet says something; its room stanza-id."""
        self.say(JULIET, body)
        (copy,) = self.h.take(ROMEO)
        self.h.clear()
        return stanza_ids(copy)[0][1]

    @defer.inlineCallbacks
    def test_errors(self):
        self.archived_room()
        sid = self.spoken()
        yield self.settle()
        cases = [
            (ROMEO, moderate(None), "bad-request"),
            (ROMEO, moderate(sid, retract=False), "bad-request"),
            (JULIET, moderate(sid), "forbidden"),  # a participant
            (NURSE, moderate(sid), "forbidden"),  # not in the room
            (ROMEO, moderate("unknown"), "item-not-found"),
        ]
        for number, (who, payload, condition) in enumerate(cases):
            got = yield self.ask(who, payload, iq_id=f"e{number}")
            self.assertEqual([error_condition(s) for s in got], [condition], payload)
        self.assertEqual(self.h.take(JULIET), [])  # nothing was broadcast

    @defer.inlineCallbacks
    def test_retraction_broadcast_result_and_tombstone(self):
        self.archived_room()
        sid = self.spoken()
        yield self.settle()
        got = yield self.ask(ROMEO, moderate(sid, "Your message is bad."))
        announcement, result = got
        self.assertEqual(result["type"], "result")
        (to_juliet,) = self.h.take(JULIET)
        for message in (announcement, to_juliet):
            self.assertEqual((message["type"], message["from"]), ("groupchat", ROOM))
            (retract,) = message.elements(NS_RETRACT, "retract")
            self.assertEqual(retract["id"], sid)
            (moderated,) = retract.elements(NS_MODERATE, "moderated")
            self.assertEqual(moderated["by"], f"{ROOM}/Romeo")
            (occupant_id,) = moderated.elements(NS_OCCUPANT_ID, "occupant-id")
            self.assertTrue(occupant_id["id"])
            self.assertEqual(str(next(retract.elements(NS_RETRACT, "reason"))),
                             "Your message is bad.")
            (apply_to,) = message.elements(NS_FASTEN, "apply-to")  # XEP-0425 0.2
            self.assertEqual(apply_to["id"], sid)
            (legacy,) = apply_to.elements(NS_MODERATE_0, "moderated")
            self.assertEqual(legacy["by"], f"{ROOM}/Romeo")
        (retraction_id,) = [i for by, i in stanza_ids(announcement) if by == ROOM]
        self.assertNotEqual(retraction_id, sid)

        yield self.settle()
        page = yield self.store.query(ROOM, limit=10)
        self.assertEqual([i.id for i in page.items], [sid, retraction_id])
        tomb, archived_retraction = page.items
        self.assertEqual(tomb.with_full, f"{ROOM}/Juliet")
        self.assertNotIn("rude", tomb.stanza)
        self.assertIn(NS_RETRACT, tomb.stanza)
        self.assertIn("retracted", tomb.stanza)
        self.assertIn(f"by='{ROOM}/Romeo'", tomb.stanza)
        self.assertIn(NS_MODERATE_0, tomb.stanza)
        self.assertIn(f"id='{sid}'", tomb.stanza)  # its stanza-id stays
        self.assertIn(f"<retract xmlns='{NS_RETRACT}' id='{sid}'", archived_retraction.stanza)
        # the join history no longer has it
        got = self.h.join(NURSE, "Nurse")
        self.assertEqual([body_text(s) for s in got if body_text(s)], [])

    @defer.inlineCallbacks
    def test_a_retracted_message_cannot_be_retracted_again(self):
        self.archived_room()
        sid = self.spoken()
        yield self.settle()
        first = yield self.ask(ROMEO, moderate(sid), iq_id="m1")
        self.assertEqual([s.name for s in first], ["message", "iq"])
        self.h.clear()
        yield self.settle()
        again = yield self.ask(ROMEO, moderate(sid, "twice"), iq_id="m2")
        self.assertEqual([error_condition(s) for s in again], ["item-not-found"])
        self.assertEqual(self.h.take(JULIET), [])  # no second announcement
        page = yield self.store.query(ROOM, limit=10)
        self.assertEqual(len(page.items), 2)  # the tombstone and one retraction
        self.assertNotIn("twice", page.items[0].stanza)

    @defer.inlineCallbacks
    def test_a_moderator_who_is_not_owner_and_older_messages(self):
        self.archived_room(**{"muc#roomconfig_historylength": "1"})
        old = self.spoken("first")
        self.spoken("second")  # the history keeps only this one: "first" is in the archive only
        self.h.send(ROMEO, f"<iq type='set' id='v' to='{ROOM}'>"
                           "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                           "<item nick='Juliet' role='moderator'/></query></iq>")
        yield self.settle()
        self.h.clear()
        got = yield self.ask(JULIET, moderate(old, reason=""))
        self.assertEqual([s.name for s in got], ["message", "iq"])
        self.assertEqual(got[1]["type"], "result")
        self.assertEqual(list(got[0].retract.elements(NS_RETRACT, "reason")), [])


class WithoutArchiveTests(unittest.TestCase):
    def test_history_only_rooms(self):
        h = MUCHarness(self)  # no database at all
        h.create(ROMEO, "Romeo")
        h.join(JULIET, "Juliet")
        h.clear()
        h.send(JULIET, f"<message type='groupchat' to='{ROOM}'><body>rude</body></message>")
        (copy,) = h.take(ROMEO)
        h.clear()
        sid = stanza_ids(copy)[0][1]
        h.send(ROMEO, f"<iq type='set' id='m' to='{ROOM}'>{moderate(sid)}</iq>")
        announcement, result = h.take(ROMEO)
        self.assertEqual(result["type"], "result")
        self.assertEqual(announcement.retract["id"], sid)
        got = h.join(NURSE, "Nurse")
        self.assertEqual([body_text(s) for s in got if body_text(s)], [])
        h.clear()
        h.send(ROMEO, f"<iq type='set' id='m2' to='{ROOM}'>{moderate(sid)}</iq>")
        (again,) = h.take(ROMEO)
        self.assertEqual(error_condition(again), "item-not-found")


class DiscoTests(unittest.TestCase):
    def test_features_need_the_stanza_ids_of_the_archive_module(self):
        from xmppd.module import Scope
        from xmppd.muc.features import MUC_MODULES
        from xmppd.muc.features.archive import RoomArchive

        for modules, expected in ((MUC_MODULES, True),
                                  ([m for m in MUC_MODULES if m is not RoomArchive], False)):
            h = MUCHarness(self, modules=modules)
            h.create(ROMEO, "Romeo")
            features = h.service.modules.features(Scope.ROOM, h.service.rooms["room"])
            self.assertEqual(NS_MODERATE in features, expected)
            self.assertEqual(NS_MODERATE_0 in features, expected)
