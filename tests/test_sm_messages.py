"""Message delivery rules (RFC 6121 8.5) and offline storage."""

from twisted.internet import defer

from tests.sm_fakes import SessionManagerTestCase, error_condition, stanza


def chat(to, body="hi", kind="chat", extra=""):
    return f"<message to='{to}' type='{kind}' id='m1'><body>{body}</body>{extra}</message>"


class FullJIDTests(SessionManagerTestCase):
    """Messages to full JIDs."""

    @defer.inlineCallbacks
    def test_to_bound_resource(self):
        """A message to a full JID with a session goes to that session only."""
        alice = yield self.connect("alice", "phone")
        other = yield self.connect("alice", "desk")
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost/phone"))
        [message] = alice.take("message")
        self.assertEqual(message["from"], "bob@localhost/res")
        self.assertEqual(str(message.body), "hi")
        self.assertEqual(other.take("message"), [])

    @defer.inlineCallbacks
    def test_to_bound_but_unavailable_resource(self):
        """A connected resource gets messages to its full JID even before presence."""
        alice = yield self.connect("alice", presence=False)
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost/res", kind="headline"))
        self.assertEqual(len(alice.take("message")), 1)

    @defer.inlineCallbacks
    def test_chat_to_absent_resource_treated_as_bare(self):
        """chat/normal to a full JID without a session go to the bare JID."""
        alice = yield self.connect("alice", "desk")
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost/gone"))
        yield self.client_sends(bob, chat("alice@localhost/gone", kind="normal"))
        self.assertEqual(len(alice.take("message")), 2)

    @defer.inlineCallbacks
    def test_groupchat_to_absent_resource(self):
        """groupchat to a full JID without a session: service-unavailable."""
        yield self.connect("alice", "desk")
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost/gone", kind="groupchat"))
        [reply] = bob.take("message")
        self.assertEqual(error_condition(reply), "service-unavailable")
        self.assertEqual(reply["from"], "alice@localhost/gone")

    @defer.inlineCallbacks
    def test_headline_and_error_to_absent_resource_dropped(self):
        """headline and error messages to a full JID without a session vanish."""
        alice = yield self.connect("alice", "desk")
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost/gone", kind="headline"))
        yield self.client_sends(bob, chat("alice@localhost/gone", kind="error"))
        self.assertEqual(alice.take(), [])
        self.assertEqual(bob.take(), [])


class BareJIDTests(SessionManagerTestCase):
    """Messages to bare JIDs."""

    @defer.inlineCallbacks
    def test_highest_priority_resources(self):
        """chat goes to all the resources with the highest non-negative priority."""
        low = yield self.connect("alice", "low", priority=1)
        high1 = yield self.connect("alice", "high1", priority=5)
        high2 = yield self.connect("alice", "high2", priority=5)
        bob = yield self.connect("bob")
        for kind in ("chat", "normal"):
            yield self.client_sends(bob, chat("alice@localhost", kind=kind))
        self.assertEqual(len(high1.take("message")), 2)
        self.assertEqual(len(high2.take("message")), 2)
        self.assertEqual(low.take("message"), [])

    @defer.inlineCallbacks
    def test_no_to_means_own_bare_jid(self):
        """A message without 'to' is for the sender's own bare JID."""
        alice = yield self.connect("alice", "a")
        yield self.client_sends(alice, "<message type='chat'><body>note</body></message>")
        self.assertEqual(len(alice.take("message")), 1)

    @defer.inlineCallbacks
    def test_negative_priority_not_a_target(self):
        """Resources with negative priority get nothing; the message is stored."""
        alice = yield self.connect("alice", "neg", priority=-1)
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost"))
        self.assertEqual(alice.take("message"), [])
        count = yield self.offline_store.count("alice")
        self.assertEqual(count, 1)

    @defer.inlineCallbacks
    def test_headline_to_all_non_negative(self):
        """headline goes to every available resource with non-negative priority."""
        a = yield self.connect("alice", "a", priority=0)
        b = yield self.connect("alice", "b", priority=3)
        c = yield self.connect("alice", "c", priority=-2)
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost", kind="headline"))
        self.assertEqual(len(a.take("message")), 1)
        self.assertEqual(len(b.take("message")), 1)
        self.assertEqual(c.take("message"), [])

    @defer.inlineCallbacks
    def test_headline_without_resources_dropped(self):
        """headline to a user without available resources is not stored."""
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost", kind="headline"))
        count = yield self.offline_store.count("alice")
        self.assertEqual(count, 0)
        self.assertEqual(bob.take(), [])

    @defer.inlineCallbacks
    def test_groupchat_to_bare(self):
        """groupchat to a bare JID: service-unavailable, even with resources online."""
        yield self.connect("alice")
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost", kind="groupchat"))
        [reply] = bob.take("message")
        self.assertEqual(error_condition(reply), "service-unavailable")

    @defer.inlineCallbacks
    def test_error_to_bare_dropped(self):
        """An error message to a bare JID is dropped."""
        alice = yield self.connect("alice")
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("alice@localhost", kind="error"))
        self.assertEqual(alice.take(), [])
        self.assertEqual(bob.take(), [])

    @defer.inlineCallbacks
    def test_unknown_user(self):
        """Messages to a user who does not exist bounce, except errors."""
        bob = yield self.connect("bob")
        for kind in ("chat", "normal", "groupchat"):
            yield self.client_sends(bob, chat("nobody@localhost", kind=kind))
            [reply] = bob.take("message")
            self.assertEqual(error_condition(reply), "service-unavailable")
        for kind in ("headline", "error"):
            yield self.client_sends(bob, chat("nobody@localhost", kind=kind))
            self.assertEqual(bob.take(), [])

    @defer.inlineCallbacks
    def test_message_to_server(self):
        """A chat message to the server itself is refused; a headline ignored."""
        bob = yield self.connect("bob")
        yield self.client_sends(bob, chat("localhost"))
        [reply] = bob.take("message")
        self.assertEqual(error_condition(reply), "service-unavailable")
        yield self.client_sends(bob, chat("localhost", kind="headline"))
        self.assertEqual(bob.take(), [])

    @defer.inlineCallbacks
    def test_from_remote_domain(self):
        """A message from another domain is delivered like any other."""
        alice = yield self.connect("alice")
        yield self.arrives(
            "<message from='x@remote.example/r' to='alice@localhost' type='chat'>"
            "<body>yo</body></message>"
        )
        [message] = alice.take("message")
        self.assertEqual(message["from"], "x@remote.example/r")

    @defer.inlineCallbacks
    def test_error_reply_goes_remote(self):
        """An error for a remote sender is routed to its domain."""
        yield self.arrives(
            chat("nobody@localhost").replace("<message", "<message from='x@remote.example/r'")
        )
        [reply] = self.remote.take()
        self.assertEqual(reply["to"], "x@remote.example/r")
        self.assertEqual(error_condition(reply), "service-unavailable")

    @defer.inlineCallbacks
    def test_malformed_to(self):
        """A 'to' that does not parse gets jid-malformed."""
        bob = yield self.connect("bob")
        element = stanza(chat("x@localhost"))
        element["to"] = "@localhost"
        yield self.client_sends(bob, element)
        [reply] = bob.take("message")
        self.assertEqual(error_condition(reply), "jid-malformed")

    @defer.inlineCallbacks
    def test_shared_element_not_mutated(self):
        """Delivering one message to several resources does not change it."""
        a = yield self.connect("alice", "a")
        b = yield self.connect("alice", "b")
        bob = yield self.connect("bob")
        sent = yield self.client_sends(bob, chat("alice@localhost"))
        before = sent.toXml()
        [ma] = a.take("message")
        [mb] = b.take("message")
        self.assertIs(ma, mb)
        self.assertEqual(sent.toXml(), before)
