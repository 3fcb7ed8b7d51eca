"""xmppd.storage.offline: the offline message store and its limit."""


from twisted.internet import defer

from tests.test_storage_roster import StoreTestCase
from xmppd.storage.offline import OfflineStore


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
