"""xmppd.muc.features.occupant_id: XEP-0421 occupant ids on room stanzas."""

from __future__ import annotations

import base64
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.muc_fakes import JULIET, MUC, NURSE, ROMEO, ROOM, MUCHarness
from xmppd.module import Scope
from xmppd.muc.features.occupant_id import NS_OCCUPANT_ID
from xmppd.storage.database import Database

JULIET2 = "juliet@localhost/garden"
FORGED = f"<occupant-id xmlns='{NS_OCCUPANT_ID}' id='forged'/>"


def ids(stanza) -> list[str]:
    """The occupant ids a stanza carries."""
    return [e["id"] for e in stanza.elements(NS_OCCUPANT_ID, "occupant-id")]


def from_nick(stanzas, nick: str, name: str, room: str = ROOM):
    return [s for s in stanzas if s.name == name and s.getAttribute("from") == f"{room}/{nick}"]


class OccupantIdTests(unittest.TestCase):
    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")

    def juliet_id(self, stanzas) -> str:
        (presence,) = from_nick(stanzas, "Juliet", "presence")
        (value,) = ids(presence)
        return value

    def test_every_presence_carries_one(self):
        stanzas = self.h.join(JULIET, "Juliet")
        for presence in [s for s in stanzas if s.name == "presence"]:
            self.assertEqual(len(ids(presence)), 1, presence.toXml())
        (other,) = from_nick(self.h.take(ROMEO), "Juliet", "presence")
        self.assertEqual(ids(other), [self.juliet_id(stanzas)])

    def test_groupchat_and_private_messages_carry_the_senders(self):
        own = self.juliet_id(self.h.join(JULIET, "Juliet"))
        self.h.clear()
        self.h.send(JULIET, f"<message type='groupchat' to='{ROOM}'><body>hi</body></message>")
        (message,) = from_nick(self.h.take(ROMEO), "Juliet", "message")
        self.assertEqual(ids(message), [own])
        self.h.send(JULIET, f"<message type='chat' to='{ROOM}/Romeo'><body>psst</body></message>")
        (message,) = from_nick(self.h.take(ROMEO), "Juliet", "message")
        self.assertEqual(ids(message), [own])

    def test_subject_change_carries_it(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(
            ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>Love</subject></message>"
        )
        (message,) = from_nick(self.h.take(JULIET), "Romeo", "message")
        self.assertEqual(len(ids(message)), 1)

    def test_subject_sent_to_joiners_carries_the_setters(self):
        """Even after the setter left: the room remembers who set the subject."""
        self.h.join(NURSE, "Nurse")  # keeps the room alive when Romeo leaves
        self.h.send(
            ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>Love</subject></message>"
        )
        (change,) = from_nick(self.h.take(ROMEO), "Romeo", "message")
        romeo_id = ids(change)
        self.h.send(ROMEO, f"<presence type='unavailable' to='{ROOM}/Romeo'/>")
        stanzas = self.h.join(JULIET, "Juliet")
        (subject,) = [s for s in stanzas if s.name == "message" and s.subject is not None]
        self.assertEqual(str(subject.subject), "Love")
        self.assertEqual(ids(subject), romeo_id)

    def test_empty_subject_carries_none(self):
        stanzas = self.h.join(JULIET, "Juliet")
        (subject,) = [s for s in stanzas if s.name == "message" and s.subject is not None]
        self.assertEqual(ids(subject), [])

    def test_stable_across_rejoin_and_nick_change(self):
        first = self.juliet_id(self.h.join(JULIET, "Juliet"))
        self.h.send(JULIET, f"<presence type='unavailable' to='{ROOM}/Juliet'/>")
        second = self.juliet_id(self.h.join("juliet@localhost/other", "Juliet"))
        self.assertEqual(first, second)
        self.h.clear()
        self.h.send("juliet@localhost/other", f"<presence to='{ROOM}/Jules'/>")
        (presence,) = from_nick(self.h.take(ROMEO), "Jules", "presence")
        self.assertEqual(ids(presence), [first])

    def test_same_for_every_session_of_a_user(self):
        first = self.juliet_id(self.h.join(JULIET, "Juliet"))
        second = self.juliet_id(self.h.join(JULIET2, "Juliet"))
        self.assertEqual(first, second)

    def test_different_between_users_and_rooms(self):
        juliet = self.juliet_id(self.h.join(JULIET, "Juliet"))
        stanzas = self.h.join(NURSE, "Nurse")
        (presence,) = from_nick(stanzas, "Nurse", "presence")
        self.assertNotEqual(ids(presence), [juliet])
        self.h.create(ROMEO, "Romeo", room="other")
        stanzas = self.h.join(JULIET, "Juliet", room="other")
        (presence,) = from_nick(stanzas, "Juliet", "presence", room=f"other@{MUC}")
        self.assertNotEqual(ids(presence), [juliet])

    def test_not_the_jid(self):
        value = self.juliet_id(self.h.join(JULIET, "Juliet"))
        self.assertNotIn("juliet", value)
        self.assertEqual(len(base64.b64decode(value)), 32)

    def test_forged_ids_are_stripped(self):
        own = self.juliet_id(self.h.join(JULIET, "Juliet"))
        self.h.clear()
        self.h.send(JULIET, f"<presence to='{ROOM}/Juliet'><show>away</show>{FORGED}</presence>")
        (presence,) = from_nick(self.h.take(ROMEO), "Juliet", "presence")
        self.assertEqual(ids(presence), [own])
        self.h.send(
            JULIET,
            f"<message type='groupchat' to='{ROOM}'><body>hi</body>{FORGED}</message>",
        )
        (message,) = from_nick(self.h.take(ROMEO), "Juliet", "message")
        self.assertEqual(ids(message), [own])

    def test_forged_id_in_a_join_is_stripped(self):
        stanzas = self.h.join(JULIET, "Juliet", extra="")
        own = self.juliet_id(stanzas)
        self.h.send(NURSE, f"<presence to='{ROOM}/Nurse'>{FORGED}</presence>")
        (presence,) = from_nick(self.h.take(JULIET), "Nurse", "presence")
        self.assertEqual(len(ids(presence)), 1)
        self.assertNotIn("forged", ids(presence))
        self.assertNotEqual(ids(presence), [own])

    def test_destruction_presence_carries_it(self):
        own = self.juliet_id(self.h.join(JULIET, "Juliet"))
        self.h.send(
            ROMEO,
            f"<iq type='set' id='d' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<destroy/></query></iq>",
        )
        (presence,) = from_nick(self.h.take(JULIET), "Juliet", "presence")
        self.assertEqual(presence["type"], "unavailable")
        self.assertEqual(ids(presence), [own])

    def test_advertised_by_rooms(self):
        room = self.h.service.rooms["room"]
        self.assertIn(NS_OCCUPANT_ID, self.h.service.modules.features(Scope.ROOM, room))
        self.assertNotIn(NS_OCCUPANT_ID, self.h.service.modules.features(Scope.MUC_SERVICE))


class SecretTests(unittest.TestCase):
    """The service's secret is kept in the database: ids survive a restart."""

    @defer.inlineCallbacks
    def test_ids_survive_a_restart(self):
        db = Database(Path(self.mktemp()) / "xmppd.sqlite")
        self.addCleanup(db.close)
        yield db.open()
        found = []
        for _ in range(2):
            h = MUCHarness(self, database=db)
            yield h.service.ready
            h.create(ROMEO, "Romeo")
            stanzas = h.join(JULIET, "Juliet")
            (presence,) = from_nick(stanzas, "Juliet", "presence")
            found.append(ids(presence))
            yield h.stop()
        self.assertEqual(found[0], found[1])
        self.assertEqual(len(found[0]), 1)

    @defer.inlineCallbacks
    def test_subject_setter_survives_a_restart(self):
        db = Database(Path(self.mktemp()) / "xmppd.sqlite")
        self.addCleanup(db.close)
        yield db.open()
        h = MUCHarness(self, database=db)
        yield h.service.ready
        h.create(ROMEO, "Romeo", fields={"muc#roomconfig_persistentroom": "1"})
        h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>Love</subject></message>")
        (change,) = from_nick(h.take(ROMEO), "Romeo", "message")
        yield h.stop()
        h = MUCHarness(self, database=db)
        yield h.service.ready
        self.assertEqual(h.service.rooms["room"].subject_by, "romeo@localhost")
        stanzas = h.join(JULIET, "Juliet")
        (subject,) = [s for s in stanzas if s.name == "message" and s.subject is not None]
        self.assertEqual(ids(subject), ids(change))
        h.send(ROMEO, f"<iq type='set' id='d' to='{ROOM}'><query "
                      "xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>")
        yield h.stop()

    def test_without_database_a_secret_is_made(self):
        h = MUCHarness(self)
        module = h.service.modules["occupant-id"]
        self.assertTrue(module.secret)
