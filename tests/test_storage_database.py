"""xmppd.storage.database: the SQLite file, its migrations and schema versions."""

import sqlite3
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from xmppd.storage import schema
from xmppd.storage.database import (
    IN_CHUNK,
    Database,
    SchemaTooNewError,
    migrate_file,
    rows_where_in,
)


class DatabaseTests(unittest.TestCase):
    """Schema versioning and connection settings."""

    def test_migrate_file_sets_version_and_wal(self):
        path = Path(self.mktemp())
        self.assertEqual(migrate_file(path), len(schema.MIGRATIONS))
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0],
                         len(schema.MIGRATIONS))
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        # Running it again changes nothing.
        self.assertEqual(migrate_file(path), len(schema.MIGRATIONS))

    def test_newer_schema_is_refused(self):
        path = Path(self.mktemp())
        connection = sqlite3.connect(path)
        connection.execute(f"PRAGMA user_version = {len(schema.MIGRATIONS) + 1}")
        connection.close()
        self.assertRaises(SchemaTooNewError, migrate_file, path)

    @defer.inlineCallbacks
    def test_open_migrates_through_the_pool(self):
        db = Database(self.mktemp())
        self.addCleanup(db.close)
        version = yield db.open()
        self.assertEqual(version, len(schema.MIGRATIONS))
        rows = yield db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        self.assertIn(("accounts",), rows)

    @defer.inlineCallbacks
    def test_connection_settings(self):
        """WAL, foreign keys, and the cache and checkpoint sizes archive writes need."""
        from xmppd.storage.database import CACHE_KIB, CHECKPOINT_PAGES

        db = Database(Path(self.mktemp()) / "xmppd.sqlite")
        self.addCleanup(db.close)
        yield db.open()
        names = ("journal_mode", "foreign_keys", "cache_size", "wal_autocheckpoint")
        rows = yield db.run(
            lambda cursor: [cursor.execute(f"PRAGMA {name}").fetchone()[0] for name in names])
        self.assertEqual(rows, ["wal", 1, -CACHE_KIB, CHECKPOINT_PAGES])


class ReaderTests(unittest.TestCase):
    """query() reads on the reactor thread when the pool has nothing under way."""

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(Path(self.mktemp()) / "xmppd.sqlite")
        self.addCleanup(self.db.close)
        yield self.db.open()

    def test_read_at_once_when_idle(self):
        rows = self.successResultOf(self.db.query("SELECT COUNT(*) FROM accounts"))
        self.assertEqual(rows, [(0,)])

    @defer.inlineCallbacks
    def test_reads_wait_for_the_writes_before_them(self):
        write = self.db.execute("INSERT INTO accounts (username, created) VALUES ('a', 0)")
        read = self.db.query("SELECT username FROM accounts")
        self.assertNoResult(read)  # queued behind the write in the pool thread
        rows = yield read
        self.assertEqual(rows, [("a",)])
        yield write
        # Idle again: a read at once sees the committed write.
        self.assertEqual(self.successResultOf(self.db.query("SELECT username FROM accounts")),
                         [("a",)])

    def test_errors_are_failed_deferreds(self):
        failure = self.failureResultOf(self.db.query("SELECT x FROM nowhere"),
                                       sqlite3.OperationalError)
        self.assertIn("no such table", str(failure.value))

    @defer.inlineCallbacks
    def test_the_reactor_threads_connection_cannot_write(self):
        self.failureResultOf(
            self.db.query("INSERT INTO accounts (username, created) VALUES ('x', 0)"),
            sqlite3.OperationalError)
        rows = yield self.db.run(lambda cursor: cursor.execute(
            "SELECT COUNT(*) FROM accounts").fetchall())
        self.assertEqual(rows, [(0,)])

    @defer.inlineCallbacks
    def test_not_before_the_schema_is_there(self):
        db = Database(Path(self.mktemp()) / "new.sqlite")
        self.addCleanup(db.close)
        opened = db.open()
        read = db.query("SELECT COUNT(*) FROM accounts")  # after the migration, in order
        yield opened
        self.assertEqual((yield read), [(0,)])

    @defer.inlineCallbacks
    def test_read_runs_a_cursor_function(self):
        def count(cursor, table):
            return cursor.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

        self.assertEqual(self.successResultOf(self.db.read(count, "accounts")), 0)
        write = self.db.execute("INSERT INTO accounts (username, created) VALUES ('a', 0)")
        read = self.db.read(count, "accounts")  # behind the write, in the pool thread
        self.assertEqual((yield read), 1)
        yield write

        def writes(cursor):
            cursor.execute("DELETE FROM accounts")

        self.failureResultOf(self.db.read(writes), sqlite3.OperationalError)
        self.assertEqual(self.successResultOf(self.db.read(count, "accounts")), 1)


class RowsWhereInTests(unittest.TestCase):
    """rows_where_in: an IN list of any length, bound a chunk at a time."""

    def test_every_value_in_chunks(self):
        connection = sqlite3.connect(":memory:")
        self.addCleanup(connection.close)
        connection.execute("CREATE TABLE t (owner TEXT, n INTEGER)")
        connection.executemany("INSERT INTO t VALUES (?, ?)",
                               [(owner, n) for owner in ("a", "b") for n in range(3000)])
        wanted = list(range(0, 3000, 2))  # 1,500 values: three chunks
        statements = []
        connection.set_trace_callback(statements.append)
        rows = list(rows_where_in(connection.cursor(),
                                  "SELECT n FROM t WHERE owner = ? AND n IN ({marks})",
                                  ("a",), wanted))
        self.assertEqual(sorted(n for (n,) in rows), wanted)
        self.assertEqual(len(statements), -(-len(wanted) // IN_CHUNK))
        self.assertEqual(list(rows_where_in(connection.cursor(), "SELECT n FROM t "
                                            "WHERE n IN ({marks})", (), [])), [])
