"""xmppd.modules.csi: XEP-0352 Client State Indication, what is held and what flushes."""

from twisted.internet import defer
from twisted.trial import unittest

from tests.sm_fakes import SessionManagerTestCase, stanza
from xmppd.modules import csi
from xmppd.storage.roster import RosterItem

NS = "urn:xmpp:csi:0"
ROOM = "verona@conference.localhost"


def texts(stanzas):
    """(name, from, body or type) of each stanza, for order checks."""
    out = []
    for element in stanzas:
        body = next((str(c) for c in element.elements() if c.name == "body"), None)
        out.append((element.name, element.getAttribute("from"),
                    body if body is not None else element.getAttribute("type")))
    return out


class ImportanceTests(unittest.TestCase):
    """The rules, one stanza at a time."""

    def important(self, xml, mentioned=None):
        return csi.message_is_important(stanza(xml), mentioned)

    def test_messages(self):
        for xml, expected in [
            ("<message type='chat'><body>hi</body></message>", True),
            ("<message><body>hi</body></message>", True),
            ("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
             "</message>", False),
            ("<message type='chat'><received xmlns='urn:xmpp:receipts' id='x'/></message>", False),
            ("<message type='headline'><body>news</body></message>", False),
            ("<message type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'/>"
             "</message>", False),
            ("<message type='error'><error type='cancel'/></message>", True),
            ("<message type='groupchat'><subject>Verona</subject></message>", True),
            ("<message type='chat'><encryption xmlns='urn:xmpp:eme:0' namespace='x'/>"
             "</message>", True),
            ("<message><x xmlns='jabber:x:conference' jid='r@c'/></message>", True),
            ("<message><x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@b'/></x>"
             "</message>", True),
            ("<message><x xmlns='http://jabber.org/protocol/muc#user'/></message>", False),
            ("<message><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>", True),
            ("<message><sent xmlns='urn:xmpp:carbons:2'/></message>", True),
            ("<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
             "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
             "</forwarded></received></message>", True),
            ("<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
             "<message xmlns='jabber:client' type='chat'><active "
             "xmlns='http://jabber.org/protocol/chatstates'/></message>"
             "</forwarded></received></message>", False),
        ]:
            self.assertEqual(self.important(xml), expected, xml)

    def test_groupchat_bodies_need_a_mention(self):
        xml = "<message type='groupchat' from='r@c/romeo'><body>hello Juliet</body></message>"
        self.assertFalse(self.important(xml))
        self.assertTrue(self.important(xml, lambda s, body: "Juliet" in body))
        self.assertFalse(self.important(xml, lambda s, body: False))

    def test_presence(self):
        for xml, expected in [
            ("<presence/>", False),
            ("<presence type='unavailable'/>", False),
            ("<presence type='subscribe'/>", True),
            ("<presence type='unsubscribed'/>", True),
            ("<presence type='error'><error type='cancel'/></presence>", True),
            ("<presence><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/>"
             "</x></presence>", True),
            ("<presence><x xmlns='http://jabber.org/protocol/muc#user'><status code='100'/>"
             "</x></presence>", False),
        ]:
            self.assertEqual(csi.presence_is_important(stanza(xml)), expected, xml)

    def test_mentions(self):
        self.assertTrue(csi.mentions("juliet: are you there?", "Juliet", "j@localhost"))
        self.assertTrue(csi.mentions("ping J. (j@localhost)", "Juliet", "j@localhost"))
        self.assertFalse(csi.mentions("Juliettes are flowers", "Juliet", "j@localhost"))
        self.assertFalse(csi.mentions("anyone?", None, "j@localhost"))
        self.assertTrue(csi.mentions("hi [c.c]!", "[c.c]", "j@localhost"))


class CSITestCase(SessionManagerTestCase):
    """Alice (phone, desk) and Bob, subscribed both ways, all online."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock_now = 1_000_000.0
        self.module = self.sm.modules["csi"]
        for owner, contact in (("alice", "bob"), ("bob", "alice")):
            yield self.roster_store.save(owner, RosterItem(
                f"{contact}@localhost", subscription="both"))
            self.sm.drop_roster_cache(owner)
        self.phone = yield self.connect("alice", "phone")
        self.desk = yield self.connect("alice", "desk")
        self.bob = yield self.connect("bob")
        for session in (self.phone, self.desk, self.bob):
            session.take()

    def inactive(self, session):
        self.module.went_inactive(session.session, stanza(f"<inactive xmlns='{NS}'/>"))

    def active(self, session):
        self.module.went_active(session.session, stanza(f"<active xmlns='{NS}'/>"))

    def groupchat(self, body, nick="romeo"):
        return stanza(f"<message type='groupchat' from='{ROOM}/{nick}' "
                      f"to='alice@localhost/phone'><body>{body}</body></message>")


class StateTests(CSITestCase):
    def test_stream_feature(self):
        self.assertIn((NS, "csi"), self.sm.stream_features())

    def test_nonza_handlers(self):
        handler = self.sm.nonza_handler(NS, "inactive")
        handler(self.phone.session, stanza(f"<inactive xmlns='{NS}'/>"))
        self.assertTrue(self.module.is_inactive(self.phone.session))
        self.sm.nonza_handler(NS, "active")(self.phone.session, stanza(f"<active xmlns='{NS}'/>"))
        self.assertFalse(self.module.is_inactive(self.phone.session))
        self.assertIsNone(self.sm.nonza_handler(NS, "sleepy"))

    def test_inactive_clients_are_not_pinged(self):
        self.assertFalse(self.sm.let_idle(self.phone.session))
        self.inactive(self.phone)
        self.assertTrue(self.sm.let_idle(self.phone.session))
        self.active(self.phone)
        self.assertFalse(self.sm.let_idle(self.phone.session))

    def test_disabled(self):
        sm = self.make_manager(modules={"disabled": ["csi"]})
        self.assertNotIn((NS, "csi"), sm.stream_features())
        self.assertIsNone(sm.nonza_handler(NS, "inactive"))

    @defer.inlineCallbacks
    def test_presence_is_held_collapsed_and_sent_on_active(self):
        self.inactive(self.phone)
        yield self.client_sends_out(self.bob, "<presence><show>away</show></presence>")
        yield self.client_sends_out(self.bob, "<presence><show>dnd</show></presence>")
        self.assertEqual(self.phone.take(), [])
        live = self.desk.take("presence")[-1]  # the active session gets both at once
        self.active(self.phone)
        [presence] = self.phone.take()
        self.assertEqual(presence["from"], "bob@localhost/res")
        self.assertEqual(str(next(c for c in presence.elements() if c.name == "show")), "dnd")
        [delay] = list(presence.elements("urn:xmpp:delay", "delay"))
        self.assertEqual(delay["from"], "alice@localhost")
        self.assertFalse(self.module.is_inactive(self.phone.session))
        # Not mutated: the stanza other sessions got has no delay.
        self.assertEqual(list(live.elements("urn:xmpp:delay", "delay")), [])

    @defer.inlineCallbacks
    def test_a_chat_message_flushes_in_order(self):
        self.inactive(self.phone)
        yield self.client_sends_out(self.bob, "<presence><show>away</show></presence>")
        self.sm.deliver(self.phone.session, self.groupchat("anyone around?"))
        yield self.client_sends_out(
            self.bob, "<message to='alice@localhost/phone' type='chat'><composing "
                      "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        self.assertEqual(self.phone.take(), [])
        yield self.client_sends_out(
            self.bob, "<message to='alice@localhost/phone' type='chat'><body>hi</body></message>")
        self.assertEqual(texts(self.phone.take()), [
            ("presence", "bob@localhost/res", None),
            ("message", f"{ROOM}/romeo", "anyone around?"),
            ("message", "bob@localhost/res", "chat"),
            ("message", "bob@localhost/res", "hi"),
        ])
        self.assertTrue(self.module.is_inactive(self.phone.session))  # still inactive
        yield self.client_sends_out(self.bob, "<presence><show>chat</show></presence>")
        self.assertEqual(self.phone.take(), [])

    @defer.inlineCallbacks
    def test_iq_flushes(self):
        self.inactive(self.phone)
        yield self.client_sends_out(self.bob, "<presence><show>away</show></presence>")
        yield self.client_sends_out(
            self.bob, "<iq to='alice@localhost/phone' type='get' id='p1'>"
                      "<ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual([e.name for e in self.phone.take()], ["presence", "iq"])

    @defer.inlineCallbacks
    def test_client_activity_flushes(self):
        self.inactive(self.phone)
        yield self.client_sends_out(self.bob, "<presence><show>away</show></presence>")
        yield self.client_sends_out(self.phone, "<message to='bob@localhost' type='chat'>"
                                                "<active xmlns='http://jabber.org/protocol/"
                                                "chatstates'/></message>")
        self.assertEqual([e.name for e in self.phone.take("presence")], ["presence"])
        self.assertTrue(self.module.is_inactive(self.phone.session))

    def test_queue_limit_flushes(self):
        self.module.config = csi.CSISettings(max_held=3)
        self.inactive(self.phone)
        for i in range(2):
            self.sm.deliver(self.phone.session, self.groupchat(f"m{i}"))
        self.assertEqual(self.phone.take(), [])
        self.sm.deliver(self.phone.session, self.groupchat("m2"))
        self.assertEqual([b for _, _, b in texts(self.phone.take())], ["m0", "m1", "m2"])

    @defer.inlineCallbacks
    def test_mentions_of_the_nick_learnt_from_the_join(self):
        yield self.client_sends_out(
            self.phone, f"<presence to='{ROOM}/Alice'><x xmlns='http://jabber.org/protocol/muc'/>"
                        "</presence>")
        self.phone.take()  # (no MUC service here: the join bounces)
        self.inactive(self.phone)
        self.sm.deliver(self.phone.session, self.groupchat("who is there?"))
        self.assertEqual(self.phone.take(), [])
        self.sm.deliver(self.phone.session, self.groupchat("alice, are you?"))
        self.assertEqual([b for _, _, b in texts(self.phone.take())],
                         ["who is there?", "alice, are you?"])
        # The room renames her (self-presence, status 110): the new nick counts.
        self.sm.deliver(self.phone.session, stanza(
            f"<presence from='{ROOM}/Ally'><x xmlns='http://jabber.org/protocol/muc#user'>"
            "<item affiliation='none' role='participant'/><status code='110'/>"
            "<status code='210'/></x></presence>"))
        self.assertEqual(len(self.phone.take("presence")), 1)
        self.sm.deliver(self.phone.session, self.groupchat("alice?"))
        self.assertEqual(self.phone.take(), [])
        self.sm.deliver(self.phone.session, self.groupchat("Ally!"))
        self.assertEqual([b for _, _, b in texts(self.phone.take())], ["alice?", "Ally!"])
        # Leaving forgets the room.
        yield self.client_sends_out(self.phone, f"<presence to='{ROOM}/Ally' type='unavailable'/>")
        self.assertEqual(self.module.nicks[self.phone.session], {})

    @defer.inlineCallbacks
    def test_session_end_forgets(self):
        yield self.client_sends_out(
            self.phone, f"<presence to='{ROOM}/Alice'><x xmlns='http://jabber.org/protocol/muc'/>"
                        "</presence>")
        self.inactive(self.phone)
        self.sm.deliver(self.phone.session, self.groupchat("held"))
        yield self.disconnect(self.phone)
        self.assertEqual(self.module.inactive, {})
        self.assertEqual(self.module.nicks, {})

    def test_delay_kept_when_there_is_one(self):
        self.inactive(self.phone)
        message = stanza(f"<message type='groupchat' from='{ROOM}/romeo'><body>old</body>"
                         "<delay xmlns='urn:xmpp:delay' from='verona@conference.localhost' "
                         "stamp='2026-01-01T00:00:00Z'/></message>")
        self.sm.deliver(self.phone.session, message)
        self.active(self.phone)
        [held] = self.phone.take()
        self.assertIs(held, message)
