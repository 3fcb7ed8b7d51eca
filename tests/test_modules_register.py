"""xmppd.modules.register: password change and account removal for logged-in users (XEP-0077)."""

from twisted.internet import defer

from tests.sm_fakes import error_condition
from tests.test_sm_iq import IQTestCase, iq
from xmppd.storage.roster import RosterItem


class RegisterTests(IQTestCase):
    """In-band password change and account removal (XEP-0077)."""

    @defer.inlineCallbacks
    def test_get(self):
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:register'/>"))
        self.assertIsNotNone(reply.query.registered)
        self.assertEqual(str(reply.query.username), "alice")

    @defer.inlineCallbacks
    def test_change_password(self):
        reply = yield self.asks(
            iq(
                None,
                "<query xmlns='jabber:iq:register'><username>alice</username>"
                "<password>n3w secret</password></query>",
                kind="set",
            )
        )
        self.assertEqual(reply["type"], "result")
        ok = yield self.accounts.check_password("alice", "n3w secret")
        self.assertTrue(ok)

    @defer.inlineCallbacks
    def test_change_password_errors(self):
        cases = [
            ("<username>bob</username><password>x</password>", "not-allowed"),
            ("<username>alice</username>", "bad-request"),
            ("<username>alice</username><password/>", "bad-request"),
        ]
        for payload, condition in cases:
            reply = yield self.asks(
                iq("localhost", f"<query xmlns='jabber:iq:register'>{payload}</query>", kind="set")
            )
            self.assertEqual(error_condition(reply), condition, payload)

    @defer.inlineCallbacks
    def test_password_change_when_registration_is_off(self):
        """registration.enabled governs new accounts only, as in Prosody."""
        self.set_registration(False)
        reply = yield self.asks(iq("localhost", "<query xmlns='jabber:iq:register'/>"))
        self.assertEqual(reply["type"], "result")
        reply = yield self.asks(
            iq(
                None,
                "<query xmlns='jabber:iq:register'><username>alice</username>"
                "<password>changed</password></query>",
                kind="set",
            )
        )
        self.assertEqual(reply["type"], "result")
        self.assertTrue((yield self.accounts.check_password("alice", "changed")))

    @defer.inlineCallbacks
    def test_remove(self):
        """The account goes; its sessions are closed; contacts are unsubscribed."""
        yield self.roster_store.save("alice", RosterItem("bob@localhost", subscription="both"))
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="both"))
        self.sm._rosters.clear()
        other = yield self.connect("alice", "other")
        bob = yield self.connect("bob")
        self.alice.take()
        reply = yield self.asks(
            iq(None, "<query xmlns='jabber:iq:register'><remove/></query>", kind="set")
        )
        self.assertEqual(reply["type"], "result")
        self.assertEqual(self.alice.closed, [("not-authorized", None)])
        self.assertEqual(other.closed, [("not-authorized", None)])
        exists = yield self.accounts.exists("alice")
        self.assertFalse(exists)
        self.assertFalse(self.sm.is_online("alice"))
        bob_presence = [(p["from"], p.getAttribute("type")) for p in bob.take("presence")]
        self.assertIn(("alice@localhost/res", "unavailable"), bob_presence)
        self.assertIn(("alice@localhost", "unsubscribed"), bob_presence)
        items = yield self.roster_items("bob")
        self.assertEqual(items, {"alice@localhost": ("none", False, False)})
        self.sm.unbind(self.alice.session)  # c2s will call this when the stream closes: no-op
        yield self.sm.wait_idle()
