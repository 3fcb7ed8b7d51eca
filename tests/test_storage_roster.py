"""xmppd.storage.roster: roster items and pending subscription requests."""

import time

from twisted.internet import defer
from twisted.trial import unittest

from xmppd.storage.database import Database
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
