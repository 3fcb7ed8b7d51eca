"""xmppd.modules.offline: storing messages for absent users, delivering them at login."""

from twisted.internet import defer

from tests.sm_fakes import SessionManagerTestCase, error_condition, stanza
from tests.test_sm_messages import chat
from xmppd.modules.offline import worth_storing
from xmppd.sm.stanzas import deserialise, serialise


class OfflineTests(SessionManagerTestCase):
    """Offline storage and delivery."""

    @defer.inlineCallbacks
    def test_stored_and_delivered_in_order_with_delay(self):
        """Messages are stored with a delay stamp and delivered in order at login."""
        bob = yield self.connect("bob")
        for i in range(3):
            yield self.client_sends(
                bob, chat("alice@localhost", body=f"m{i}", extra="<x xmlns='urn:ext'/>")
            )
        alice = yield self.connect("alice", presence=False)
        self.assertEqual(alice.take("message"), [])
        yield self.client_sends(alice, "<presence/>")
        messages = alice.take("message")
        self.assertEqual([str(m.body) for m in messages], ["m0", "m1", "m2"])
        for m in messages:
            [delay] = [c for c in m.elements() if c.name == "delay"]
            self.assertEqual(delay.uri, "urn:xmpp:delay")
            self.assertEqual(delay["from"], "localhost")
            self.assertTrue(delay["stamp"].endswith("Z"))
            self.assertEqual(m["from"], "bob@localhost/res")
            self.assertEqual([c.uri for c in m.elements() if c.name == "x"], ["urn:ext"])
        count = yield self.offline_store.count("alice")
        self.assertEqual(count, 0)

    @defer.inlineCallbacks
    def test_not_delivered_to_negative_priority(self):
        """A resource with negative priority does not receive offline messages."""
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost"))
        neg = yield self.connect("alice", "neg", presence=False)
        yield self.client_sends(neg, "<presence><priority>-5</priority></presence>")
        self.assertEqual(neg.take("message"), [])
        yield self.client_sends(neg, "<presence><priority>1</priority></presence>")
        self.assertEqual(len(neg.take("message")), 1)

    @defer.inlineCallbacks
    def test_kept_across_restart(self):
        """Stored messages survive a new session manager on the same database."""
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost", body="persist"))
        yield self.sm.stopService()
        self.sm = self.make_manager()
        self.sm.startService()
        alice = yield self.connect("alice", presence=False)
        yield self.client_sends(alice, "<presence/>")
        [message] = alice.take("message")
        self.assertEqual(str(message.body), "persist")

    @defer.inlineCallbacks
    def test_live_messages_do_not_overtake_stored(self):
        """A message arriving while stored ones are delivered comes after them."""
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost", body="old"))
        alice = yield self.connect("alice", presence=False)
        presence = stanza("<presence/>")
        presence["from"] = alice.jid.full()
        self.router.route(presence)
        live = stanza(chat("alice@localhost", body="new"))
        live["from"] = bob.jid.full()
        self.router.route(live)
        yield self.sm.wait_idle()
        self.assertEqual([str(m.body) for m in alice.take("message")], ["old", "new"])

    @defer.inlineCallbacks
    def test_chat_states_only_not_stored(self):
        """A message with nothing but a chat state is not stored."""
        bob = yield self.connect("bob")
        yield self.client_sends(
            bob,
            "<message to='alice@localhost' type='chat'>"
            "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        )
        count = yield self.offline_store.count("alice")
        self.assertEqual(count, 0)
        self.assertEqual(bob.take(), [])

    @defer.inlineCallbacks
    def test_storage_full(self):
        """Beyond the per-user cap the sender gets service-unavailable."""
        self.offline_store.limit = 2
        bob = yield self.connect("bob")
        for _ in range(3):
            yield self.client_sends(bob, chat("alice@localhost"))
        [reply] = bob.take("message")
        self.assertEqual(error_condition(reply), "service-unavailable")
        count = yield self.offline_store.count("alice")
        self.assertEqual(count, 2)

    def test_worth_storing(self):
        """Content decides; chat states, threads and no-store hints do not count."""
        self.assertTrue(worth_storing(stanza(chat("a@b"))))
        self.assertTrue(
            worth_storing(stanza("<message><x xmlns='jabber:x:conference'/></message>"))
        )
        self.assertFalse(worth_storing(stanza("<message/>")))
        self.assertFalse(worth_storing(stanza("<message><thread>t</thread></message>")))
        self.assertFalse(
            worth_storing(stanza(chat("a@b", extra="<no-store xmlns='urn:xmpp:hints'/>")))
        )

    def test_serialise_round_trip(self):
        """Stored XML comes back in the jabber:client namespace with its extensions."""
        original = stanza(
            chat("a@localhost", body="&lt;&amp;&gt;", extra="<x xmlns='urn:ext'><y/></x>")
        )
        back = deserialise(serialise(original))
        self.assertEqual(back.uri, "jabber:client")
        self.assertEqual(str(back.body), "<&>")
        self.assertEqual(back.body.uri, "jabber:client")
        self.assertEqual(back.x.uri, "urn:ext")
        self.assertIsNone(deserialise("<broken"))
