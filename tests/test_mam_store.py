"""xmppd.mam.store: the message archive table, its paging and its clean-up."""

import re
import sqlite3
import time
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.test_storage_roster import StoreTestCase
from xmppd.mam.store import (
    INCOMING,
    OUTGOING,
    ArchiveBounds,
    ArchiveSequence,
    ArchiveStore,
    UnknownArchiveId,
    new_archive_id,
    seq_of,
    stored_floor,
)
from xmppd.storage.database import Database, _statements
from xmppd.storage.schema import MIGRATIONS

OWNER = "alice@localhost"


class ArchiveTestCase(StoreTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.store = ArchiveStore(self.db)

    @defer.inlineCallbacks
    def fill(self, count, owner=OWNER, account="alice", stamp=None, with_jid="bob@localhost/phone",
             start=1000.0):
        """Archive ``count`` messages one second apart from ``start`` (or all at ``stamp``)."""
        ids = []
        for i in range(count):
            archive_id = yield self.store.append(
                owner, stamp=start + i if stamp is None else stamp, with_jid=with_jid,
                direction=INCOMING if i % 2 else OUTGOING,
                stanza=f"<message xmlns='jabber:client' id='m{i}'><body>{i}</body></message>",
                account=account)
            ids.append(archive_id)
        return ids

    def page_ids(self, page):
        return [item.id for item in page.items]


class AppendTests(ArchiveTestCase):
    @defer.inlineCallbacks
    def test_ids_are_unguessable_url_safe_unique_and_growing(self):
        ids = yield self.fill(20)
        self.assertEqual(len(set(ids)), 20)
        for archive_id in ids:
            self.assertRegex(archive_id, r"\A[0-9a-f]{32}\Z")
        self.assertEqual(sorted(ids), ids)
        # The first half is the archive time in microseconds (the row's seq),
        # the second half random: ids drawn in the same microsecond differ in
        # both (the next microsecond is taken), ids of one seq in the second.
        self.assertEqual([seq_of(i) for i in ids], [(1000 + n) * 1_000_000 for n in range(20)])
        sequence = ArchiveSequence()
        same_time = [sequence.new_id(1_700_000_000.0) for _ in range(50)]
        self.assertEqual([seq_of(i) - 1_700_000_000_000_000 for i in same_time], list(range(50)))
        self.assertEqual(len({sequence.id_for(5)[16:] for _ in range(50)}), 50)
        self.assertLess(abs(seq_of(new_archive_id()) / 1_000_000 - time.time()), 60)

    def test_seq_of_refuses_what_is_not_an_id(self):
        for bad in ("", "x" * 32, "0" * 31, "0" * 33, "0" * 15 + "_" + "0" * 16,
                    " " + "0" * 31, "\u0663" * 32, "0" * 16 + "-" + "0" * 15):
            self.assertIsNone(seq_of(bad), bad)
        self.assertEqual(seq_of("00000000000000ff" + "0" * 16), 255)

    def test_the_sequence_never_goes_back(self):
        sequence = ArchiveSequence()
        self.assertEqual(sequence.next(10.0), 10_000_000)
        self.assertEqual(sequence.next(5.0), 10_000_001)  # the clock stepped back
        sequence.raise_floor(20_000_000)  # what the database already holds
        self.assertEqual(sequence.next(15.0), 20_000_001)
        sequence.raise_floor(3)
        self.assertEqual(sequence.next(30.0), 30_000_000)

    @defer.inlineCallbacks
    def test_rows_come_back_as_archived(self):
        yield self.store.append(OWNER, stamp=5.5, with_jid="bob@localhost/phone",
                                direction=INCOMING, stanza="<message/>", account="alice")
        page = yield self.store.query(OWNER, limit=10)
        (item,) = page.items
        self.assertEqual((item.stamp, item.with_full, item.direction, item.stanza),
                         (5.5, "bob@localhost/phone", INCOMING, "<message/>"))

    @defer.inlineCallbacks
    def test_unknown_account_stores_nothing(self):
        archive_id = yield self.store.append("nobody@localhost", stamp=1, with_jid="bob@localhost",
                                             direction=INCOMING, stanza="<message/>",
                                             account="nobody")
        self.assertIsNone(archive_id)
        size = yield self.store.size("nobody@localhost")
        self.assertEqual(size, 0)

    def test_bad_direction(self):
        self.assertRaises(ValueError, self.store.append, OWNER, stamp=1, with_jid="b@localhost",
                          direction="sideways", stanza="<message/>")

    @defer.inlineCallbacks
    def test_given_id_must_be_unique_and_ours(self):
        fixed = self.store.new_id(1.0)
        yield self.store.append(OWNER, stamp=1, with_jid="b@localhost", direction=INCOMING,
                                stanza="<message/>", archive_id=fixed)
        yield self.assertFailure(
            self.store.append("room@muc.localhost", stamp=1, with_jid="b@localhost",
                              direction=INCOMING, stanza="<message/>", archive_id=fixed),
            sqlite3.IntegrityError)
        self.assertRaises(ValueError, self.store.append, OWNER, stamp=1, with_jid="b@localhost",
                          direction=INCOMING, stanza="<message/>", archive_id="fixed")

    @defer.inlineCallbacks
    def test_the_floor_is_the_largest_stored_seq(self):
        self.assertEqual(stored_floor(self.db.path), 0)
        ids = yield self.fill(3)
        self.assertEqual(stored_floor(self.db.path), seq_of(ids[-1]))

    @defer.inlineCallbacks
    def test_deleting_the_account_deletes_its_archive_only(self):
        yield self.fill(3)
        yield self.fill(2, owner="room@muc.localhost", account=None)
        yield self.db.execute("DELETE FROM accounts WHERE username = 'alice'")
        mine = yield self.store.size(OWNER)
        room = yield self.store.size("room@muc.localhost")
        self.assertEqual((mine, room), (0, 2))

    @defer.inlineCallbacks
    def test_the_migrated_database_has_the_table_and_indexes(self):
        rows = yield self.db.query(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'mam_archive' AND type = 'index' "
            "AND sql IS NOT NULL ORDER BY name")
        self.assertEqual([r[0] for r in rows], ["mam_archive_owner"])
        yield self.fill(1)
        size = yield self.store.size(OWNER)
        self.assertEqual(size, 1)




class PagingTests(ArchiveTestCase):
    @defer.inlineCallbacks
    def test_forwards(self):
        ids = yield self.fill(10)
        page = yield self.store.query(OWNER, limit=4)
        self.assertEqual(self.page_ids(page), ids[0:4])
        self.assertEqual((page.first, page.last, page.index, page.count, page.complete),
                         (ids[0], ids[3], 0, 10, False))
        page = yield self.store.query(OWNER, after=page.last, limit=4)
        self.assertEqual(self.page_ids(page), ids[4:8])
        self.assertEqual((page.index, page.count, page.complete), (4, 10, False))
        page = yield self.store.query(OWNER, after=page.last, limit=4)
        self.assertEqual(self.page_ids(page), ids[8:10])
        self.assertEqual((page.first, page.last, page.index, page.count, page.complete),
                         (ids[8], ids[9], 8, 10, True))
        page = yield self.store.query(OWNER, after=page.last, limit=4)
        self.assertEqual((page.items, page.first, page.index, page.count, page.complete),
                         ([], None, None, 10, True))

    @defer.inlineCallbacks
    def test_exactly_one_page_is_complete(self):
        ids = yield self.fill(4)
        page = yield self.store.query(OWNER, limit=4)
        self.assertEqual(self.page_ids(page), ids)
        self.assertTrue(page.complete)

    @defer.inlineCallbacks
    def test_backwards(self):
        ids = yield self.fill(10)
        page = yield self.store.query(OWNER, limit=4, reverse=True)
        self.assertEqual(self.page_ids(page), ids[6:10])
        self.assertEqual((page.first, page.last, page.index, page.count, page.complete),
                         (ids[6], ids[9], 6, 10, False))
        page = yield self.store.query(OWNER, before=page.first, limit=4, reverse=True)
        self.assertEqual(self.page_ids(page), ids[2:6])
        self.assertEqual((page.index, page.complete), (2, False))
        page = yield self.store.query(OWNER, before=page.first, limit=4, reverse=True)
        self.assertEqual(self.page_ids(page), ids[0:2])
        self.assertEqual((page.index, page.count, page.complete), (0, 10, True))

    @defer.inlineCallbacks
    def test_index(self):
        ids = yield self.fill(10)
        page = yield self.store.query(OWNER, index=3, limit=2)
        self.assertEqual(self.page_ids(page), ids[3:5])
        self.assertEqual((page.index, page.complete), (3, False))
        page = yield self.store.query(OWNER, index=8, limit=5)
        self.assertEqual((self.page_ids(page), page.index, page.complete), (ids[8:], 8, True))
        page = yield self.store.query(OWNER, index=20, limit=5)
        self.assertEqual((page.items, page.count, page.complete), ([], 10, True))

    @defer.inlineCallbacks
    def test_limit_zero_counts_only(self):
        yield self.fill(3)
        page = yield self.store.query(OWNER, limit=0)
        self.assertEqual((page.items, page.count, page.complete), ([], 3, False))
        page = yield self.store.query("empty@localhost", limit=0)
        self.assertEqual((page.items, page.count, page.complete), ([], 0, True))

    @defer.inlineCallbacks
    def test_same_timestamp_keeps_archive_order(self):
        ids = yield self.fill(6, stamp=1234.5)  # archived at 1234.5 and the next 5 µs
        page = yield self.store.query(OWNER, start=1234.5, end=1234.500005, limit=3)
        self.assertEqual(self.page_ids(page), ids[:3])
        page = yield self.store.query(OWNER, start=1234.5, after=page.last, limit=3)
        self.assertEqual(self.page_ids(page), ids[3:])
        self.assertTrue(page.complete)
        page = yield self.store.query(OWNER, limit=2, reverse=True)
        self.assertEqual(self.page_ids(page), ids[4:])

    @defer.inlineCallbacks
    def test_owners_are_separate(self):
        yield self.fill(3)
        theirs = yield self.fill(2, owner="bob@localhost", account="bob")
        page = yield self.store.query("bob@localhost", limit=10)
        self.assertEqual((self.page_ids(page), page.count), (theirs, 2))


class FilterTests(ArchiveTestCase):
    @defer.inlineCallbacks
    def test_with_bare_matches_every_resource_full_only_itself(self):
        phone = yield self.fill(2, with_jid="bob@localhost/phone")
        laptop = yield self.fill(1, with_jid="bob@localhost/laptop")
        yield self.fill(1, with_jid="carol@localhost/phone")
        bare = yield self.fill(1, with_jid="bob@localhost")
        page = yield self.store.query(OWNER, with_="bob@localhost", limit=10)
        self.assertEqual(self.page_ids(page), phone + laptop + bare)
        self.assertEqual(page.count, 4)
        page = yield self.store.query(OWNER, with_="bob@localhost/phone", limit=10)
        self.assertEqual(self.page_ids(page), phone)
        page = yield self.store.query(OWNER, with_="bob@localhost/tablet", limit=10)
        self.assertEqual((page.items, page.count), ([], 0))

    @defer.inlineCallbacks
    def test_start_and_end_are_inclusive(self):
        ids = yield self.fill(10)  # stamps 1000 .. 1009
        page = yield self.store.query(OWNER, start=1003, end=1006, limit=10)
        self.assertEqual(self.page_ids(page), ids[3:7])
        self.assertEqual((page.count, page.index), (4, 0))
        page = yield self.store.query(OWNER, start=1003, end=1006, limit=2, reverse=True)
        self.assertEqual((self.page_ids(page), page.index, page.count), (ids[5:7], 2, 4))
        page = yield self.store.query(OWNER, start=1006, end=1003, limit=10)
        self.assertEqual((page.items, page.count, page.complete), ([], 0, True))

    @defer.inlineCallbacks
    def test_archive_times_never_go_back(self):
        # A clock stepping back does not reorder the archive: such a message is
        # archived one microsecond after the one before, and time ranges follow.
        ids = []
        for stamp in (5, 1, 7, 3, 9, 4):
            archive_id = yield self.store.append(OWNER, stamp=stamp, with_jid="bob@localhost",
                                                 direction=INCOMING, stanza="<message/>")
            ids.append(archive_id)
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual([item.stamp for item in page.items],
                         [5, 5.000001, 7, 7.000001, 9, 9.000001])
        page = yield self.store.query(OWNER, start=5.000001, end=8, limit=10)
        self.assertEqual(self.page_ids(page), ids[1:4])
        page = yield self.store.query(OWNER, start=5, end=7, limit=2, reverse=True)
        self.assertEqual((self.page_ids(page), page.index, page.count, page.complete),
                         (ids[1:3], 1, 3, False))

    @defer.inlineCallbacks
    def test_after_id_and_before_id_bound_the_result_set(self):
        ids = yield self.fill(10)
        page = yield self.store.query(OWNER, after_id=ids[2], before_id=ids[8], limit=3)
        self.assertEqual(self.page_ids(page), ids[3:6])
        self.assertEqual((page.count, page.index, page.complete), (5, 0, False))
        page = yield self.store.query(OWNER, after_id=ids[2], before_id=ids[8],
                                      after=page.last, limit=3)
        self.assertEqual((self.page_ids(page), page.index, page.complete), (ids[6:8], 3, True))

    @defer.inlineCallbacks
    def test_ids(self):
        ids = yield self.fill(6)
        page = yield self.store.query(OWNER, ids=[ids[4], ids[1]], limit=10)
        self.assertEqual(self.page_ids(page), [ids[1], ids[4]])
        self.assertEqual(page.count, 2)
        page = yield self.store.query(OWNER, ids=[ids[4], ids[1], ids[4]], limit=1)
        self.assertEqual((self.page_ids(page), page.count, page.complete), ([ids[1]], 2, False))
        theirs = yield self.fill(1, owner="bob@localhost", account="bob")
        for wanted in ([ids[4], "unknown"], theirs):
            yield self.assertFailure(self.store.query(OWNER, ids=wanted, limit=10),
                                     UnknownArchiveId)
        page = yield self.store.query(OWNER, ids=[], limit=10)
        self.assertEqual(page.count, 0)

    @defer.inlineCallbacks
    def test_unknown_cursor_ids_fail(self):
        yield self.fill(3)
        others = yield self.fill(1, owner="bob@localhost", account="bob")
        for kwargs in ({"after": "nope"}, {"before": "nope"}, {"after_id": "nope"},
                       {"before_id": "nope"}, {"after": others[0]}):
            yield self.assertFailure(self.store.query(OWNER, limit=5, **kwargs),
                                     UnknownArchiveId)


class MaintenanceTests(ArchiveTestCase):
    @defer.inlineCallbacks
    def test_metadata(self):
        empty = yield self.store.metadata(OWNER)
        self.assertEqual(empty, ArchiveBounds())
        ids = yield self.fill(3)
        bounds = yield self.store.metadata(OWNER)
        self.assertEqual(bounds, ArchiveBounds(ids[0], 1000.0, ids[2], 1002.0))

    @defer.inlineCallbacks
    def test_delete_owner(self):
        yield self.fill(3)
        yield self.fill(2, owner="bob@localhost", account="bob")
        deleted = yield self.store.delete_owner(OWNER)
        self.assertEqual(deleted, 3)
        sizes = yield defer.gatherResults(
            [self.store.size(OWNER), self.store.size("bob@localhost")])
        self.assertEqual(sizes, [0, 2])

    @defer.inlineCallbacks
    def test_expire(self):
        ids, theirs = [], []
        for n in range(5):  # 1000 .. 1004 and 1000.5 .. 1004.5
            ids += yield self.fill(1, start=1000 + n)
            theirs += yield self.fill(1, owner="bob@localhost", account="bob", start=1000.5 + n)
        deleted = yield self.store.expire(1002)
        self.assertEqual(deleted, 4)
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual(self.page_ids(page), ids[2:])
        page = yield self.store.query("bob@localhost", limit=10)
        self.assertEqual(self.page_ids(page), theirs[2:])

    @defer.inlineCallbacks
    def test_expire_in_batches(self):
        ids = yield self.fill(5)  # 1000 .. 1004
        deleted = yield self.store.expire(1004, batch=3)
        self.assertEqual(deleted, 3)
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual(self.page_ids(page), ids[3:])
        deleted = yield self.store.expire(1004, batch=3)
        self.assertEqual(deleted, 1)
        deleted = yield self.store.expire(1004, batch=3)
        self.assertEqual(deleted, 0)
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual(self.page_ids(page), ids[4:])

    @defer.inlineCallbacks
    def test_expire_personal_or_room_archives(self):
        mine, room = [], []
        for n in range(3):  # 1000 .. 1002 and 1000.5 .. 1002.5
            mine += yield self.fill(1, start=1000 + n)
            room += yield self.fill(1, owner="room@conference.localhost", account=None,
                                    start=1000.5 + n)
        deleted = yield self.store.expire(1002, personal=False)
        self.assertEqual(deleted, 2)
        page = yield self.store.query("room@conference.localhost", limit=10)
        self.assertEqual(self.page_ids(page), room[2:])
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual(self.page_ids(page), mine)
        deleted = yield self.store.expire(1002, batch=1, personal=True)
        self.assertEqual(deleted, 1)
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual(self.page_ids(page), mine[1:])

    @defer.inlineCallbacks
    def test_expiry_in_batches_goes_on_where_it_stopped(self):
        mine, room = [], []
        for n in range(6):
            mine += yield self.fill(1, start=1000 + n)
            room += yield self.fill(1, owner="room@conference.localhost", account=None,
                                    start=1000.5 + n)
        counts = []
        for _ in range(4):
            counts.append((yield self.store.expire(1003, batch=1, personal=True)))
        self.assertEqual(counts, [1, 1, 1, 0])
        deleted = yield self.store.expire(1003, batch=10, personal=False)  # its own progress
        self.assertEqual(deleted, 3)
        deleted = yield self.store.expire(1006, batch=10, personal=True)
        self.assertEqual(deleted, 3)
        sizes = yield defer.gatherResults(
            [self.store.size(OWNER), self.store.size("room@conference.localhost")])
        self.assertEqual(sizes, [0, 3])

    @defer.inlineCallbacks
    def test_get_and_replace(self):
        ids = yield self.fill(2)
        item = yield self.store.get(OWNER, ids[1])
        self.assertEqual((item.id, item.stamp, item.direction), (ids[1], 1001.0, INCOMING))
        self.assertIn("<body>1</body>", item.stanza)
        missing = yield self.store.get("bob@localhost", ids[1])
        self.assertIsNone(missing)
        tombstone = "<message xmlns='jabber:client'><retracted/></message>"
        replaced = yield self.store.replace(OWNER, ids[1], tombstone)
        self.assertTrue(replaced)
        replaced = yield self.store.replace("bob@localhost", ids[0], tombstone)
        self.assertFalse(replaced)
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual(self.page_ids(page), ids)
        self.assertEqual(page.items[1].stanza, tombstone)
        self.assertEqual(page.items[1].stamp, 1001.0)

    @defer.inlineCallbacks
    def test_trim_keeps_the_newest(self):
        ids = yield self.fill(7)
        deleted = yield self.store.trim(OWNER, 3)
        self.assertEqual(deleted, 4)
        page = yield self.store.query(OWNER, limit=10)
        self.assertEqual(self.page_ids(page), ids[4:])
        deleted = yield self.store.trim(OWNER, 3)
        self.assertEqual(deleted, 0)
        deleted = yield self.store.trim(OWNER, 0)
        self.assertEqual(deleted, 3)
        self.assertRaises(ValueError, self.store.trim, OWNER, -1)


class IndexUseTests(ArchiveTestCase):
    """The paging queries use the indexes instead of scanning the table."""

    def plan(self, cursor, sql, params):
        rows = cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        return " | ".join(row[-1] for row in rows)

    @defer.inlineCallbacks
    def test_query_plans(self):
        def plans(cursor):
            found = {}
            for name, where, params in (
                ("owner", "owner = ?", [OWNER]),
                ("with", "owner = ? AND with_bare = ?", [OWNER, "bob@localhost"]),
                ("range", "owner = ? AND seq >= ? AND seq <= ?", [OWNER, 1, 2]),
            ):
                found[name] = self.plan(
                    cursor, f"SELECT id FROM mam_archive WHERE {where} ORDER BY seq DESC "
                    "LIMIT 51", params)
                found[name + " count"] = self.plan(
                    cursor, f"SELECT COUNT(*) FROM mam_archive WHERE {where}", params)
            found["expire"] = self.plan(
                cursor, "SELECT seq FROM mam_archive WHERE seq >= ? AND seq < ? "
                "AND account IS NOT NULL ORDER BY seq LIMIT 10", [1, 2])
            found["id"] = self.plan(
                cursor, "SELECT 1 FROM mam_archive WHERE seq = ? AND owner = ? AND id = ?",
                [1, OWNER, "x"])
            return found

        found = yield self.db.run(plans)
        for name in ("owner", "with", "range"):
            self.assertIn("USING COVERING INDEX mam_archive_owner", found[name + " count"])
            self.assertIn("USING INDEX mam_archive_owner", found[name])
        self.assertIn("USING INTEGER PRIMARY KEY", found["expire"])
        self.assertIn("USING INTEGER PRIMARY KEY", found["id"])
        for plan in found.values():
            self.assertNotIn("TEMP B-TREE", plan)
            self.assertIsNone(re.search(r"SCAN mam_archive(?! USING)", plan), plan)


class MigrationTests(unittest.TestCase):
    """Migration 8 rebuilds the archive of a version-7 database."""

    @defer.inlineCallbacks
    def test_rows_keep_their_order_and_get_seqs_and_ids(self):
        path = Path(self.mktemp()) / "xmppd.sqlite"
        path.parent.mkdir()
        connection = sqlite3.connect(path)
        for number in range(7):
            for statement in _statements(MIGRATIONS[number]):
                connection.execute(statement)
        connection.execute("PRAGMA user_version = 7")
        connection.executemany("INSERT INTO accounts (username, created) VALUES (?, 0)",
                               [("alice",), ("alicea",)])
        old = [  # (owner, account, old id, stamp): equal stamps, a clock that stepped back
            ("alice@localhost", "alice", "0000000000000aaaaaaaaaaaaa", 100.25),
            ("bob@localhost", None, "0000000000000bbbbbbbbbbbbb", 100.25),
            ("alice@localhost", "alice", "deadbeef" * 4, 99.0),
            ("alice@localhost", "alice", "x", 200.0),
            ("alicea@localhost", "alicea", "y", 300.0),
        ]
        connection.executemany(
            "INSERT INTO mam_archive (owner, account, id, stamp, with_bare, with_full, direction, "
            "stanza) VALUES (?, ?, ?, ?, 'c@d', 'c@d/e', 'in', '<message/>')", old)
        connection.commit()
        connection.close()

        db = Database(path)
        self.addCleanup(db.close)
        version = yield db.open()
        self.assertEqual(version, len(MIGRATIONS))
        rows = yield db.query("SELECT seq, owner, id FROM mam_archive ORDER BY seq")
        self.assertEqual([(seq, owner) for seq, owner, _ in rows], [
            (100_250_000, "alice@localhost"), (100_250_001, "bob@localhost"),
            (100_250_002, "alice@localhost"), (200_000_000, "alice@localhost"),
            (300_000_000, "alicea@localhost")])
        for seq, _, archive_id in rows:
            self.assertEqual(seq_of(archive_id), seq)
        store = ArchiveStore(db)
        page = yield store.query("alice@localhost", limit=10)
        self.assertEqual([item.stamp for item in page.items], [100.25, 100.250002, 200.0])
        # the trigger deletes an account's archive, and only its own
        yield db.execute("DELETE FROM accounts WHERE username = 'alice'")
        left = yield db.query("SELECT owner FROM mam_archive ORDER BY seq")
        self.assertEqual(left, [("bob@localhost",), ("alicea@localhost",)])
