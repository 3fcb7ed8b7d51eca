"""The SQLite database, used through twisted.enterprise.adbapi.

One connection in one pool thread: SQLite serialises writers anyway, and a
single connection keeps transactions simple. WAL journal mode lets readers
(the admin CLI, a backup) work while the server writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import defer

from xmppd.logs import logger
from xmppd.storage.schema import MIGRATIONS

log = logger(__name__)

#: The page cache of the server's connection (KiB).
CACHE_KIB = 32768
#: WAL pages written before a checkpoint copies them into the file.
CHECKPOINT_PAGES = 10000


def _configure_connection(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA busy_timeout = 5000")
    # Message archives write many rows whose indexes lead with their owner:
    # a larger page cache keeps those index pages in memory, and fewer
    # checkpoints copy each page back to the file once for many commits.
    connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    connection.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")


#: How long a read on the reactor thread may wait for SQLite's lock (ms); a
#: read that would wait longer goes to the pool thread instead.
READER_BUSY_MS = 20


class SchemaTooNewError(sqlite3.DatabaseError):
    """The database was written by a newer xmppd than this one."""


class Database:
    """An SQLite file with the xmppd schema, accessed off the reactor thread."""

    def __init__(self, path: Path | str, reactor: Any = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._closed = False
        #: Operations handed to the pool thread that may write and have not fired yet.
        self._pending = 0
        #: A read-only connection for :meth:`read` on the reactor thread.
        self._reader: sqlite3.Connection | None = None
        kwargs: dict[str, Any] = {}
        if reactor is not None:
            kwargs["cp_reactor"] = reactor
        self.pool = adbapi.ConnectionPool(
            "sqlite3",
            str(self.path),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_configure_connection,
            cp_noisy=False,
            **kwargs,
        )

    @defer.inlineCallbacks
    def open(self):
        """Apply pending migrations; fires when the database is ready."""
        version = yield self._track(self.pool.runInteraction(_migrate))
        log.info("database {path} at schema version {version}", path=self.path, version=version)
        return version

    def close(self) -> None:
        """Close the connection (pending work finishes first); safe to call twice."""
        if not self._closed:
            self._closed = True
            self.pool.close()
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
        """Run function(cursor, *args) in a transaction in the pool thread."""
        return self._track(self.pool.runInteraction(function, *args, **kwargs))

    def query(self, sql: str, *params: Any) -> defer.Deferred:
        """Run a SELECT; fires with the list of rows (at once when it can: see :meth:`read`)."""
        return self.read(_fetch_all, sql, params)

    def read(self, function: Callable[..., Any], *args: Any) -> defer.Deferred:
        """Run function(cursor, *args), which only reads; fires with its result.

        When no write (:meth:`execute`, :meth:`run`) handed to the pool
        thread is still under way, it runs at once on a read-only connection
        of the reactor thread (as Prosody reads SQLite): a hop to the pool
        thread and back costs about 120 µs of CPU, far more than a read by
        key, and a login makes about nine reads. Otherwise it queues in the
        pool behind those writes, so a read never overtakes a write made
        before it. In WAL mode a read does not wait for a writer; one that
        would wait for SQLite's lock (a checkpoint) goes to the pool too. A
        function that tries to write fails (the connection is read-only).
        """
        if self._pending == 0 and not self._closed:
            reader = self._reader if self._reader is not None else self._open_reader()
            if reader is not None:
                try:
                    return defer.succeed(function(reader.cursor(), *args))
                except sqlite3.OperationalError as e:
                    if e.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY,
                                                         sqlite3.SQLITE_LOCKED):
                        return defer.fail()
                except Exception:
                    return defer.fail()
        return self.pool.runInteraction(function, *args)  # a read: nothing waits for it

    def execute(self, sql: str, *params: Any) -> defer.Deferred:
        """Run a statement that returns no rows, in its own transaction."""
        return self._track(self.pool.runOperation(sql, params))

    def _track(self, d: defer.Deferred) -> defer.Deferred:
        self._pending += 1

        def done(result: Any) -> Any:
            self._pending -= 1
            return result

        return d.addBoth(done)

    def _open_reader(self) -> sqlite3.Connection | None:
        """The read-only connection (None while the file does not exist yet)."""
        try:
            reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                     check_same_thread=False)
            reader.execute(f"PRAGMA busy_timeout = {READER_BUSY_MS}")
            reader.execute("PRAGMA query_only = ON")
            reader.execute(f"PRAGMA cache_size = -{CACHE_KIB // 4}")
            (version,) = reader.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error:
            return None
        if version < len(MIGRATIONS):  # not migrated yet: the pool's connection does it
            reader.close()
            return None
        self._reader = reader
        return reader


#: Values bound in one ``IN (...)`` list by :func:`rows_where_in` (SQLite's
#: bound-parameter limit is far above it).
IN_CHUNK = 500


def rows_where_in(cursor: sqlite3.Cursor, sql: str, params: tuple,
                  values: list) -> Iterator[tuple]:
    """The rows of ``sql`` for every value, ``{marks}`` standing for ``?, ?, ...``.

    The values are bound after ``params``, :data:`IN_CHUNK` at a time (one
    statement per chunk).
    """
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start:start + IN_CHUNK]
        yield from cursor.execute(sql.format(marks=", ".join("?" * len(chunk))),
                                  (*params, *chunk))


def _fetch_all(cursor: sqlite3.Cursor, sql: str, params: tuple) -> list:
    return cursor.execute(sql, params).fetchall()


def _migrate(cursor: sqlite3.Cursor) -> int:
    (version,) = cursor.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise SchemaTooNewError(
            f"database schema version {version} is newer than this xmppd "
            f"knows ({len(MIGRATIONS)}); upgrade xmppd"
        )
    if version < len(MIGRATIONS) and not cursor.connection.in_transaction:
        cursor.execute("BEGIN")  # all pending migrations commit together, or none
    for number in range(version, len(MIGRATIONS)):
        for statement in _statements(MIGRATIONS[number]):
            cursor.execute(statement)
        cursor.execute(f"PRAGMA user_version = {number + 1}")
        log.info("database migrated to schema version {v}", v=number + 1)
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """A migration's statements (a trigger's body holds semicolons of its own)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()!r}")
    return statements


def migrate_file(path: Path | str) -> int:
    """Create or upgrade the database file synchronously (start-up, admin CLI).

    Returns the schema version. Raises sqlite3.Error or SchemaTooNewError.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path))
    try:
        _configure_connection(connection)
        version = _migrate(connection.cursor())
        connection.commit()
    finally:
        connection.close()
    return version
