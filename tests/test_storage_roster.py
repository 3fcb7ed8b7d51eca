"""xmppd.storage.roster: roster items and pending subscription requests."""

import sqlite3
import time

from twisted.internet import defer
from twisted.trial import unittest

from xmppd.storage.database import Database, migrate_file
from xmppd.storage.roster import RosterItem, RosterStore
from xmppd.storage.schema import MIGRATIONS


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
    def test_one_item(self):
        """item() reads one contact's item; None for a contact not on the roster."""
        store = RosterStore(self.db)
        item = RosterItem("bob@localhost", "Bob", "from", groups=["g"])
        yield store.save("alice", item)
        found = yield store.item("alice", "bob@localhost")
        self.assertEqual(found, item)
        self.assertIsNone((yield store.item("alice", "carol@localhost")))
        self.assertIsNone((yield store.item("bob", "bob@localhost")))

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


class RosterVersionTests(StoreTestCase):
    """Roster versions (RFC 6121 2.6): per user, raised by every change, kept."""

    @defer.inlineCallbacks
    def test_monotonic_per_user(self):
        store = RosterStore(self.db)
        self.assertEqual((yield store.version("alice")), 0)
        first = yield store.save("alice", RosterItem("bob@localhost"))
        self.assertGreaterEqual(first, 1)
        second = yield store.save("alice", RosterItem("bob@localhost", subscription="to"))
        third = yield store.remove("alice", "bob@localhost")
        self.assertEqual((second, third), (first + 1, first + 2))
        self.assertIsNone((yield store.remove("alice", "bob@localhost")))
        self.assertEqual((yield store.version("alice")), third)
        self.assertEqual((yield store.version("bob")), 0)

    @defer.inlineCallbacks
    def test_survives_reopening(self):
        store = RosterStore(self.db)
        version = yield store.save("alice", RosterItem("bob@localhost"))
        self.db.close()
        self.db = Database(self.db.path)
        yield self.db.open()
        self.addCleanup(self.db.close)
        self.assertEqual((yield RosterStore(self.db).version("alice")), version)

    @defer.inlineCallbacks
    def test_goes_with_the_account(self):
        store = RosterStore(self.db)
        yield store.save("alice", RosterItem("bob@localhost"))
        yield self.db.execute("DELETE FROM accounts WHERE username = 'alice'")
        rows = yield self.db.query("SELECT * FROM roster_versions WHERE username = 'alice'")
        self.assertEqual(rows, [])
        self.assertEqual((yield store.version("alice")), 0)


class RosterVersionMigrationTests(unittest.TestCase):
    def test_existing_accounts_start_at_one(self):
        """Migration 4 gives the accounts of an older database version 1."""
        path = self.mktemp() + ".sqlite"
        connection = sqlite3.connect(path)
        for number in range(3):
            connection.executescript(MIGRATIONS[number])
        connection.execute("PRAGMA user_version = 3")
        connection.execute("INSERT INTO accounts (username, created) VALUES ('alice', 0)")
        connection.commit()
        connection.close()
        self.assertEqual(migrate_file(path), len(MIGRATIONS))
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        rows = connection.execute("SELECT username, version FROM roster_versions").fetchall()
        self.assertEqual(rows, [("alice", 1)])
