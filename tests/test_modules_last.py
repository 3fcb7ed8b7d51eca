"""xmppd.modules.last: XEP-0012 uptime and last logout, for whom it may see it."""

from twisted.internet import defer, task

from tests.sm_fakes import error_condition
from tests.test_sm_iq import IQTestCase, iq
from xmppd.storage.roster import RosterItem

LAST = "<query xmlns='jabber:iq:last'/>"


class LastActivityTests(IQTestCase):
    """Alice asks about the server, herself, her contact Bob and stranger Carol."""

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        yield super().setUp()

    def make_manager(self, **sections):
        manager = super().make_manager(**sections)
        manager.modules["last"].server.reactor = self.clock
        return manager

    def seconds(self, reply):
        self.assertEqual(reply["type"], "result", reply.toXml())
        return int(reply.query["seconds"]), str(reply.query)

    @defer.inlineCallbacks
    def test_server_uptime(self):
        self.clock.advance(42)
        reply = yield self.asks(iq("localhost", LAST))
        self.assertEqual(self.seconds(reply), (42, ""))
        self.assertEqual(reply["from"], "localhost")

    @defer.inlineCallbacks
    def test_contact_offline_after_unavailable_with_status(self):
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="from"))
        bob = yield self.connect("bob")
        yield self.client_sends(bob, "<presence type='unavailable'><status>Gone skiing</status>"
                                "</presence>")
        yield self.disconnect(bob)
        self.clock.advance(90)
        reply = yield self.asks(iq("bob@localhost", LAST))
        self.assertEqual(self.seconds(reply), (90, "Gone skiing"))

    @defer.inlineCallbacks
    def test_logout_without_unavailable_presence(self):
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="both"))
        bob = yield self.connect("bob")
        self.clock.advance(5)
        yield self.disconnect(bob)
        self.clock.advance(7)
        reply = yield self.asks(iq("bob@localhost", LAST))
        self.assertEqual(self.seconds(reply), (7, ""))

    @defer.inlineCallbacks
    def test_online_user_is_zero(self):
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="from"))
        yield self.connect("bob")
        self.clock.advance(30)
        reply = yield self.asks(iq("bob@localhost", LAST))
        self.assertEqual(self.seconds(reply), (0, ""))

    @defer.inlineCallbacks
    def test_only_the_last_resource_counts(self):
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="from"))
        one = yield self.connect("bob", "one")
        yield self.connect("bob", "two")
        yield self.client_sends(one, "<presence type='unavailable'><status>phone off</status>"
                                "</presence>")
        reply = yield self.asks(iq("bob@localhost", LAST))
        self.assertEqual(self.seconds(reply), (0, ""))

    @defer.inlineCallbacks
    def test_the_user_itself_with_and_without_to(self):
        other = yield self.connect("alice", "laptop")
        yield self.client_sends(other, "<presence type='unavailable'><status>bye</status>"
                                "</presence>")
        yield self.client_sends(self.alice, "<presence type='unavailable'/>")
        self.clock.advance(3)
        for to in ("alice@localhost", None):
            reply = yield self.asks(iq(to, LAST))
            self.assertEqual(self.seconds(reply), (3, ""))

    @defer.inlineCallbacks
    def test_strangers_and_ghosts_are_forbidden(self):
        yield self.roster_store.save("carol", RosterItem("alice@localhost", subscription="to"))
        for to in ("carol@localhost", "ghost@localhost"):
            reply = yield self.asks(iq(to, LAST))
            self.assertEqual(error_condition(reply), "forbidden")
            self.assertNotIn("seconds", reply.toXml())

    @defer.inlineCallbacks
    def test_kept_across_restart_and_deleted_with_the_account(self):
        yield self.roster_store.save("bob", RosterItem("alice@localhost", subscription="from"))
        bob = yield self.connect("bob")
        yield self.client_sends(bob, "<presence type='unavailable'><status>x</status></presence>")
        yield self.sm.stopService()
        self.sm = self.make_manager()
        self.sm.startService()
        self.alice = yield self.connect("alice")
        self.clock.advance(11)
        reply = yield self.asks(iq("bob@localhost", LAST))
        self.assertEqual(self.seconds(reply), (11, "x"))
        yield self.accounts.delete("bob")
        rows = yield self.db.query("SELECT * FROM last_activity WHERE username = 'bob'")
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_long_status_is_cut(self):
        bob = yield self.connect("bob")
        yield self.client_sends(bob, "<presence type='unavailable'><status>" + "x" * 5000
                                + "</status></presence>")
        rows = yield self.db.query("SELECT status FROM last_activity WHERE username = 'bob'")
        self.assertEqual(len(rows[0][0]), 1024)

    @defer.inlineCallbacks
    def test_set_is_a_bad_request(self):
        reply = yield self.asks(iq("localhost", LAST, kind="set"))
        self.assertEqual(error_condition(reply), "bad-request")
