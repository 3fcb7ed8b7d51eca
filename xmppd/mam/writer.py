"""A write-behind buffer for archived messages: many rows, one transaction.

:class:`ArchiveWriter` is how anything archives a message without waiting
for the database: :meth:`ArchiveWriter.append` draws the archive id at once
(the XEP-0359 stanza-id can be stamped before delivery) and queues the row;
the rows collected during ``gather`` seconds (0.1 s) are written together,
in one transaction (``executemany``). While a batch is being written, new
rows wait and go together in the next one, so a busy server writes fewer,
larger transactions: each transaction rewrites the index pages it touches,
and the indexes lead with the archive's owner, so many small ones cost
several times the disk writes of a few large ones. (A crash loses at most
the archive rows of the last ``gather`` seconds: the messages themselves
were delivered or stored offline.) Each append's Deferred fires with its id
once the row is committed, or with None when the row names an account
that does not exist (personal archives are the accounts').

Nothing is ever dropped: rows wait in memory until written. A batch holds
at most ``max_batch`` rows; more waiting rows are submitted at once as
further batches (the database pool is one thread, first in first out), and
more than ``warn_backlog`` waiting rows are logged as a warning (the
database cannot keep up). :meth:`flush` submits everything now: a query
submitted after it sees every row appended before it. Stop the server's
writer with :meth:`flush` too (the ``mam`` module does on stop).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from xmppd.logs import logger
from xmppd.mam.store import INSERT, MICROSECONDS, archive_row, sequence_for
from xmppd.storage.database import rows_where_in

log = logger(__name__)


@dataclass
class _Batch:
    rows: list[tuple] = field(default_factory=list)
    #: Row index -> the Deferred of an append that wants its result.
    waiters: dict[int, defer.Deferred] = field(default_factory=dict)


class ArchiveWriter:
    """Buffers archive rows and writes each turn's rows in one transaction."""

    def __init__(self, database: Any, reactor: Any = None, *, max_batch: int = 2000,
                 warn_backlog: int = 20000, gather: float = 0.1):
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.database = database
        self.sequence = sequence_for(database)
        self.reactor = reactor
        self.max_batch = max_batch
        self.warn_backlog = warn_backlog
        self.gather = gather
        self._pending = _Batch()
        self._scheduled = None
        self._writing: defer.Deferred | None = None
        self._last: defer.Deferred = defer.succeed(None)
        self._warned = False
        #: Rows written, batches written (for tests and figures).
        self.rows_written = 0
        self.batches_written = 0

    @property
    def pending(self) -> int:
        """How many rows wait to be submitted."""
        return len(self._pending.rows)

    def append(self, owner: str, *, stamp: float, with_jid: str, direction: str,
               stanza: str, account: str | None = None, archive_id: str | None = None,
               want_result: bool = False) -> tuple[str, defer.Deferred | None]:
        """Queue one message for ``owner``'s archive; returns (its id, a Deferred or None).

        The arguments are :meth:`ArchiveStore.append`'s. The Deferred (only
        with ``want_result``: most callers do not wait) fires with the id
        once the row is committed, or None when ``account`` does not exist.
        """
        row = archive_row(self.sequence, owner, stamp=stamp, with_jid=with_jid,
                          direction=direction, stanza=stanza, account=account,
                          archive_id=archive_id)
        waiter = defer.Deferred() if want_result else None
        if waiter is not None:
            self._pending.waiters[len(self._pending.rows)] = waiter
        self._queue(row)
        return row[3], waiter

    def add(self, owner: str, account: str | None, with_jid: str, direction: str,
            stanza: str, stamp: float) -> str:
        """:meth:`append` for the message path: positional, no result; returns the id."""
        sequence = self.sequence
        seq = round(stamp * MICROSECONDS)
        if seq <= sequence.last:
            seq = sequence.last + 1
        sequence.last = seq
        archive_id = sequence.id_for(seq)
        slash = with_jid.find("/")
        self._queue((seq, owner, account, archive_id,
                     with_jid if slash < 0 else with_jid[:slash], with_jid, direction, stanza))
        return archive_id

    def _queue(self, row: tuple) -> None:
        rows = self._pending.rows
        rows.append(row)
        count = len(rows)
        if count >= self.max_batch:
            self._submit()
        elif self._scheduled is None and self._writing is None:
            self._scheduled = self.reactor.callLater(self.gather, self._turn)
        if count > self.warn_backlog and not self._warned:
            self._warned = True
            log.warn("{count} archive rows wait for the database", count=count)

    def flush(self) -> defer.Deferred:
        """Submit every waiting row now; fires when everything appended so far is written."""
        if self._pending.rows:
            self._submit()
        return _chained(self._last)

    def _turn(self) -> None:
        self._scheduled = None
        if self._writing is None and self._pending.rows:
            self._submit()

    def _submit(self) -> None:
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        batch, self._pending = self._pending, _Batch()
        self._warned = False
        d = self.database.run(_write, batch.rows)
        d.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))
        self._writing = self._last = d

    def _written(self, stored: list[bool], batch: _Batch) -> None:
        self.rows_written += sum(stored)
        self.batches_written += 1
        self._done_writing()
        for index, waiter in batch.waiters.items():
            waiter.callback(batch.rows[index][3] if stored[index] else None)

    def _failed(self, failure, batch: _Batch) -> None:
        log.failure("writing {count} archive rows failed", failure, count=len(batch.rows))
        self._done_writing()
        for waiter in batch.waiters.values():
            waiter.errback(failure)

    def _done_writing(self) -> None:
        self._writing = None
        if self._pending.rows:
            self._submit()


def _chained(d: defer.Deferred) -> defer.Deferred:
    """A new Deferred that fires (with None) when ``d`` has, success or failure."""
    result: defer.Deferred = defer.Deferred()

    def done(_):
        result.callback(None)
        return _

    d.addBoth(done)
    return result


def _write(cursor: sqlite3.Cursor, rows: list[tuple]) -> list[bool]:
    """Insert rows in one transaction; which were stored (accounts that exist)."""
    accounts = {row[2] for row in rows if row[2] is not None}
    existing: set[str] = set()
    if accounts:
        existing.update(r[0] for r in rows_where_in(
            cursor, "SELECT username FROM accounts WHERE username IN ({marks})", (),
            sorted(accounts)))
    stored = [row[2] is None or row[2] in existing for row in rows]
    kept = [row for row, keep in zip(rows, stored, strict=True) if keep]
    try:
        cursor.executemany(INSERT, kept)
    except sqlite3.IntegrityError:
        # A seq taken already (an id given twice): row by row, so only the
        # offending rows are lost, and loudly.
        cursor.connection.rollback()
        for index, row in enumerate(rows):
            if not stored[index]:
                continue
            try:
                cursor.execute(INSERT, row)
            except sqlite3.IntegrityError:
                stored[index] = False
                log.error("could not archive a message for {owner} (id {id})",
                          owner=row[1], id=row[3])
    return stored
