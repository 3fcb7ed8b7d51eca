"""xmppd.mam.writer: the write-behind buffer of archive rows."""

import time

from twisted.internet import defer, task
from twisted.trial import unittest

from xmppd.mam.store import ArchiveStore
from xmppd.mam.writer import ArchiveWriter
from xmppd.storage.database import Database


class CountingDatabase:
    """Wraps the database to count the transactions the writer submits."""

    def __init__(self, database):
        self.database = database
        self.runs = 0

    def run(self, function, *args):
        self.runs += 1
        return self.database.run(function, *args)


class WriterTests(unittest.TestCase):
    """Rows of one reactor turn go in one transaction; ids come at once."""

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(self.mktemp() + "/xmppd.sqlite")
        yield self.db.open()
        self.addCleanup(self.db.close)
        yield self.db.execute("INSERT INTO accounts (username, created) VALUES (?, ?)",
                              "alice", time.time())
        self.clock = task.Clock()
        self.counting = CountingDatabase(self.db)
        self.writer = ArchiveWriter(self.counting, self.clock, max_batch=5, gather=0.05)
        self.store = ArchiveStore(self.db)

    def append(self, n, account="alice", want_result=False):
        return self.writer.append("alice@localhost", stamp=1000.0 + n,
                                  with_jid="bob@localhost/r", direction="in",
                                  stanza=f"<message>{n}</message>", account=account,
                                  want_result=want_result)

    @defer.inlineCallbacks
    def test_one_transaction_per_gathering(self):
        ids = [self.append(n)[0] for n in range(2)]
        self.assertEqual(self.counting.runs, 0)  # nothing written at once
        self.clock.advance(0.04)
        ids.append(self.append(2)[0])
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(self.writer.pending, 3)
        self.assertEqual(self.counting.runs, 0)
        self.clock.advance(0.01)  # 50 ms after the first row
        self.assertEqual(self.counting.runs, 1)
        yield self.writer.flush()
        page = yield self.store.query("alice@localhost", limit=10)
        self.assertEqual([item.id for item in page.items], ids)
        self.assertEqual(self.writer.batches_written, 1)
        self.assertEqual(self.writer.rows_written, 3)

    @defer.inlineCallbacks
    def test_rows_wait_while_a_batch_is_written(self):
        self.append(0)
        self.clock.advance(0.05)
        self.assertEqual(self.counting.runs, 1)
        self.append(1)
        self.append(2)
        self.clock.advance(0.05)
        self.assertEqual(self.counting.runs, 1)  # coalescing behind the batch in flight
        yield self.writer.flush()
        self.assertEqual(self.counting.runs, 2)
        self.assertEqual(self.writer.rows_written, 3)

    @defer.inlineCallbacks
    def test_full_batches_go_at_once(self):
        for n in range(12):
            self.append(n)
        self.assertEqual(self.counting.runs, 2)  # 5 + 5, the last 2 wait for the turn
        self.assertEqual(self.writer.pending, 2)
        yield self.writer.flush()
        self.assertEqual(self.counting.runs, 3)
        size = yield self.store.size("alice@localhost")
        self.assertEqual(size, 12)

    @defer.inlineCallbacks
    def test_results_and_unknown_accounts(self):
        archive_id, kept = self.append(0, want_result=True)
        _, lost = self.append(1, account="nobody", want_result=True)
        _, none = self.append(2)
        self.assertIsNone(none)
        yield self.writer.flush()
        result = yield kept
        self.assertEqual(result, archive_id)
        result = yield lost
        self.assertIsNone(result)
        size = yield self.store.size("alice@localhost")
        self.assertEqual(size, 2)  # rows 0 and 2; "nobody" has no archive

    @defer.inlineCallbacks
    def test_query_after_flush_sees_everything(self):
        for n in range(3):
            self.append(n)
        self.writer.flush()  # submitted, not awaited: the pool is FIFO
        page = yield self.store.query("alice@localhost", limit=10)
        self.assertEqual(page.count, 3)

    @defer.inlineCallbacks
    def test_a_colliding_id_loses_only_its_row(self):
        first, _ = self.append(0)
        yield self.writer.flush()
        self.writer.append("alice@localhost", stamp=1.0, with_jid="x@y", direction="in",
                           stanza="<message/>", account="alice", archive_id=first)
        _, other = self.append(1, want_result=True)
        yield self.writer.flush()
        result = yield other
        self.assertIsNotNone(result)
        size = yield self.store.size("alice@localhost")
        self.assertEqual(size, 2)
        self.flushLoggedErrors()

    @defer.inlineCallbacks
    def test_add_is_append_for_the_message_path(self):
        first = self.writer.add("alice@localhost", "alice", "bob@localhost/r", "out",
                                "<message>a</message>", 1000.0)
        second = self.writer.add("alice@localhost", "alice", "bob@localhost", "in",
                                 "<message>b</message>", 999.0)  # the clock stepped back
        third, _ = self.append(5)
        yield self.writer.flush()
        page = yield self.store.query("alice@localhost", limit=10)
        self.assertEqual([(i.id, i.stamp, i.with_full, i.direction, i.stanza) for i in page.items],
                         [(first, 1000.0, "bob@localhost/r", "out", "<message>a</message>"),
                          (second, 1000.000001, "bob@localhost", "in", "<message>b</message>"),
                          (third, 1005.0, "bob@localhost/r", "in", "<message>5</message>")])
        page = yield self.store.query("alice@localhost", with_="bob@localhost", limit=10)
        self.assertEqual(page.count, 3)

    def test_bad_direction(self):
        self.assertRaises(ValueError, self.writer.append, "a", stamp=1.0, with_jid="b",
                          direction="sideways", stanza="<m/>")


class BacklogTests(unittest.TestCase):
    """More waiting rows than ``warn_backlog``: a warning, nothing dropped."""

    def test_warning(self):
        from twisted.internet.defer import Deferred

        class SlowDatabase:
            def __init__(self):
                self.batches = []

            def run(self, function, rows):
                self.batches.append(rows)
                return Deferred()

        database = SlowDatabase()
        writer = ArchiveWriter(database, task.Clock(), max_batch=100, warn_backlog=3)
        events = []
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for n in range(5):
            writer.append("a@b", stamp=1.0, with_jid="c@d", direction="in", stanza=str(n))
        warnings = [e for e in events if "wait for the database" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        writer.flush()
        self.assertEqual([len(rows) for rows in database.batches], [5])
