"""RosterStore, OfflineStore and the per-user serial queue."""

import time

from twisted.internet import defer
from twisted.trial import unittest

from xmppd.sm.queue import SerialQueues
from xmppd.storage.database import Database
from xmppd.storage.offline import OfflineStore
from xmppd.storage.roster import RosterItem, RosterStore


class StoreTestCase(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(self.mktemp() + "/x.sqlite")
        yield self.db.open()
        self.addCleanup(self.db.close)
        for user in ("alice", "bob"):
            yield self.db.execute(
                "INSERT INTO accounts (username, created) VALUES (?, ?)", user, time.time()
            )


class RosterStoreTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_round_trip(self):
        store = RosterStore(self.db)
        item = RosterItem("bob@localhost", "Bob", "to", ask=True, approved=True, groups=["a", "b"])
        yield store.save("alice", item)
        items = yield store.items("alice")
        self.assertEqual(items, {"bob@localhost": item})
        item.set_subscription(from_=True)
        self.assertEqual(item.subscription, "both")
        yield store.save("alice", item)
        items = yield store.items("alice")
        self.assertEqual(items["bob@localhost"].subscription, "both")
        removed = yield store.remove("alice", "bob@localhost")
        self.assertTrue(removed)
        removed = yield store.remove("alice", "bob@localhost")
        self.assertFalse(removed)

    @defer.inlineCallbacks
    def test_pending(self):
        store = RosterStore(self.db)
        yield store.add_pending("alice", "bob@localhost", "<presence/>")
        yield store.add_pending("alice", "bob@localhost", "<presence id='2'/>")
        pending = yield store.pending("alice")
        self.assertEqual(pending, [("bob@localhost", "<presence id='2'/>")])
        gone = yield store.remove_pending("alice", "bob@localhost")
        self.assertTrue(gone)
        pending = yield store.pending("alice")
        self.assertEqual(pending, [])

    @defer.inlineCallbacks
    def test_cascade_with_account(self):
        store = RosterStore(self.db)
        yield store.save("alice", RosterItem("bob@localhost"))
        yield self.db.execute("DELETE FROM accounts WHERE username = 'alice'")
        items = yield store.items("alice")
        self.assertEqual(items, {})

    def test_element(self):
        element = RosterItem("b@x", None, "none", ask=True).to_element()
        self.assertEqual(
            element.toXml(),
            "<item xmlns='jabber:iq:roster' jid='b@x' subscription='none' ask='subscribe'/>",
        )


class OfflineStoreTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_store_fetch_delete_limit(self):
        store = OfflineStore(self.db, limit=2)
        for i in range(3):
            ok = yield store.store("alice", "2024-01-01T00:00:00Z", f"<message id='{i}'/>")
            self.assertEqual(ok, i < 2)
        rows = yield store.fetch("alice")
        self.assertEqual([r[2] for r in rows], ["<message id='0'/>", "<message id='1'/>"])
        yield store.delete("alice", [rows[0][0]])
        count = yield store.count("alice")
        self.assertEqual(count, 1)
        other = yield store.fetch("bob")
        self.assertEqual(other, [])


class SerialQueuesTests(unittest.TestCase):
    def test_order_and_results(self):
        """Operations for one key run one at a time, in order; other keys run at once."""
        queues = SerialQueues()
        log = []
        gate = defer.Deferred()

        def slow():
            log.append("slow start")
            return gate.addCallback(lambda _: log.append("slow end") or "slow")

        first = queues.run("a", slow)
        second = queues.run("a", lambda: log.append("second") or 2)
        other = queues.run("b", lambda: log.append("other") or 3)
        self.assertTrue(queues.busy("a"))
        self.assertFalse(queues.busy("b"))
        self.assertEqual(log, ["slow start", "other"])
        self.assertEqual(self.successResultOf(other), 3)
        gate.callback(None)
        self.assertEqual(log, ["slow start", "other", "slow end", "second"])
        self.assertEqual(self.successResultOf(first), "slow")
        self.assertEqual(self.successResultOf(second), 2)
        self.assertFalse(queues.busy("a"))

    def test_failure_does_not_stop_queue(self):
        queues = SerialQueues()
        gate = defer.Deferred()
        first = queues.run("a", lambda: gate)
        second = queues.run("a", lambda: 1 / 0)
        third = queues.run("a", lambda: "ok")
        gate.errback(RuntimeError("x"))
        self.failureResultOf(first, RuntimeError)
        self.failureResultOf(second, ZeroDivisionError)
        self.assertEqual(self.successResultOf(third), "ok")
