"""xmppd.sm.manager: binding resources, conflicts."""

from twisted.internet import defer

from tests.sm_fakes import REMOTE, FakeSession, SessionManagerTestCase, error_condition, stanza
from xmppd.storage.roster import RosterItem


class BindTests(SessionManagerTestCase):
    """Binding resources."""

    def test_generated_resource(self):
        """No resource asked for: one is generated, unique."""
        first = self.sm.bind(FakeSession(), "alice", None).jid
        second = self.sm.bind(FakeSession(), "alice", None).jid
        self.assertTrue(first.resource)
        self.assertNotEqual(first.resource, second.resource)
        self.assertEqual(first.userhost(), "alice@localhost")

    def test_invalid_resource_replaced(self):
        """A resource that fails resourceprep is replaced by a generated one."""
        bound = self.sm.bind(FakeSession(), "alice", "bad\u0007").jid
        self.assertTrue(bound.resource.startswith("xmppd-"))

    def test_resource_normalised(self):
        """The requested resource is prepared (NFKC)."""
        bound = self.sm.bind(FakeSession(), "alice", "\u2167").jid
        self.assertEqual(bound.resource, "VIII")

    @defer.inlineCallbacks
    def test_conflict(self):
        """Binding a taken full JID closes the older session with 'conflict'."""
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="from"))
        bob = yield self.connect("bob")
        old = yield self.connect("alice", "same")
        bob.take()
        new = FakeSession()
        new.session = self.sm.bind(new, "alice", "same")
        new.jid = new.session.jid
        yield self.sm.wait_idle()
        self.assertEqual(old.closed, [("conflict", None)])
        self.assertEqual(new.jid.full(), "alice@localhost/same")
        [gone] = bob.take("presence")
        self.assertEqual(gone["type"], "unavailable")
        self.sm.unbind(old.session)  # the old stream ends later: must not unbind the new one
        yield self.sm.wait_idle()
        self.assertIs(self.sm.state_for(new.jid).connection, new)
        yield self.client_sends(bob, "<message to='alice@localhost/same'><body>x</body></message>")
        self.assertEqual(len(new.take("message")), 1)
        self.assertEqual(old.take("message"), [])

    @defer.inlineCallbacks
    def test_remote_domain_stanza_not_for_us(self):
        """The router never sends other domains here, but if it did we would bounce."""
        bob = yield self.connect("bob")
        self.sm.send(stanza(f"<message from='bob@localhost/res' to='a@{REMOTE}'><body/></message>"))
        yield self.sm.wait_idle()
        [reply] = bob.take("message")
        self.assertEqual(error_condition(reply), "remote-server-not-found")

    @defer.inlineCallbacks
    def test_junk_dropped(self):
        """No 'from', a bad 'from' or an unknown element: dropped without a reply."""
        bob = yield self.connect("bob")
        self.sm.send(stanza("<message to='bob@localhost'><body/></message>"))
        self.sm.send(stanza("<message from='@@' to='bob@localhost'><body/></message>"))
        self.sm.send(stanza("<foo from='bob@localhost/res' to='bob@localhost'/>"))
        yield self.sm.wait_idle()
        self.assertEqual(bob.take(), [])
