"""The message archive table (XEP-0313) and its queries.

One row per archived message. ``owner`` names the archive: an account's
bare JID for a personal archive, a room's JID for a room archive. A
personal archive's rows also carry ``account`` (the username; NULL for
rooms): deleting the account deletes its archive (a trigger, by owner).

The archive is written on every chat message, so the table is kept lean:
one index, ``(owner, seq, with_bare)``, serves paging, time ranges and the
``with`` filter (migration 8; Prosody's table has three).

* ``seq`` orders the archive and is its time: the archive time in
  microseconds since the epoch, unique (a message archived in the same
  microsecond as the one before, or while the clock steps back, gets the
  next free one: an :class:`ArchiveSequence` per database hands them out).
  Time ranges (``start``/``end``) are ``seq`` ranges.
* ``id``: the archive id handed to clients (the XEP-0359 stanza-id and the
  XEP-0313 result id): the ``seq`` in 16 hex digits and 64 random bits in
  16 more. The random half makes ids unguessable; the ``seq`` half makes a
  lookup by id a lookup by ``seq``, with no index of its own.

``with_bare``/``with_full`` are the other party (for a room archive: the
occupant), so a ``with`` filter matches a bare JID against any resource and
a full JID exactly. Results always come back oldest first.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

#: Directions relative to the archive's owner.
INCOMING = "in"
OUTGOING = "out"

#: Microseconds in a second (``seq`` is the archive time in microseconds).
MICROSECONDS = 1_000_000


class UnknownArchiveId(LookupError):
    """An after/before id that is not in the archive (XEP-0313: ``item-not-found``)."""


class ArchiveSequence:
    """Hands out archive ``seq`` numbers (microseconds, always growing) and their ids.

    One per database (:func:`sequence_for`): every archive of the server
    shares the ``seq`` space. Ids are drawn on the delivery path, so the
    random halves come from random bytes drawn ahead (one system call per
    512 ids).
    """

    def __init__(self, floor: int = 0):
        #: The last seq handed out (or the largest one stored).
        self.last = floor
        self._noise: list[str] = []

    def raise_floor(self, seq: int) -> None:
        """Never hand out ``seq`` or anything below it (the largest one already stored)."""
        if seq > self.last:
            self.last = seq

    def next(self, stamp: float) -> int:
        """The seq for a message archived at ``stamp`` (POSIX seconds)."""
        seq = round(stamp * MICROSECONDS)
        if seq <= self.last:
            seq = self.last + 1
        self.last = seq
        return seq

    def new_id(self, stamp: float) -> str:
        """A fresh archive id for a message archived at ``stamp``."""
        return self.id_for(self.next(stamp))

    def id_for(self, seq: int) -> str:
        """An id for ``seq``: its 16 hex digits and 16 random ones."""
        noise = self._noise
        if not noise:
            pool = os.urandom(4096).hex()
            noise = self._noise = [pool[at:at + 16] for at in range(0, len(pool), 16)]
        return format(seq, "016x") + noise.pop()


def seq_of(archive_id: str) -> int | None:
    """The ``seq`` an archive id names, or None if it is not one of ours."""
    if len(archive_id) != 32:
        return None
    try:
        seq = int(archive_id[:16], 16)
        int(archive_id[16:], 16)
    except ValueError:
        return None
    if not (archive_id.isascii() and archive_id.isalnum()):  # int() takes '_', ' ', '٣'
        return None
    return seq


def sequence_for(database: Any) -> ArchiveSequence:
    """The :class:`ArchiveSequence` of a database (made on first use)."""
    sequence = getattr(database, "archive_sequence", None)
    if sequence is None:
        sequence = database.archive_sequence = ArchiveSequence()
    return sequence


def stored_floor(path: Any) -> int:
    """The largest ``seq`` in a database file (0 if none): read once at start-up."""
    connection = sqlite3.connect(str(path))
    try:
        (seq,) = connection.execute("SELECT MAX(seq) FROM mam_archive").fetchone()
    finally:
        connection.close()
    return seq or 0


#: Archive ids of stanzas no database stores (a room without one).
_unstored = ArchiveSequence()


def new_archive_id(stamp: float | None = None) -> str:
    """An archive id from no database's sequence (for stanza-ids nothing stores)."""
    return _unstored.new_id(time.time() if stamp is None else stamp)


@dataclass(frozen=True)
class ArchivedMessage:
    """One archived message as a query returns it."""

    id: str
    stamp: float
    with_full: str
    direction: str
    stanza: str


@dataclass(frozen=True)
class ArchivePage:
    """One page of a query, oldest first, and what RSM (XEP-0059) reports about it.

    ``count`` is the size of the whole result set (the filters without the
    page cursors); ``index`` the position of the page's first item in it;
    ``complete`` is True when no more items lie in the paging direction
    (after the page going forwards, before it going backwards).
    """

    items: list[ArchivedMessage]
    count: int
    index: int | None
    complete: bool

    @property
    def first(self) -> str | None:
        """The id of the page's oldest item."""
        return self.items[0].id if self.items else None

    @property
    def last(self) -> str | None:
        """The id of the page's newest item."""
        return self.items[-1].id if self.items else None


@dataclass(frozen=True)
class ArchiveBounds:
    """The oldest and newest message of an archive (the XEP-0313 metadata query)."""

    first_id: str | None = None
    first_stamp: float | None = None
    last_id: str | None = None
    last_stamp: float | None = None


class ArchiveStore:
    """Archived messages in the server's database; every method returns a Deferred."""

    def __init__(self, database):
        self.database = database
        self.sequence = sequence_for(database)
        #: Expiry's progress: below this seq nothing of that kind is left to
        #: expire (personal True, rooms False, all None).
        self._expired: dict[bool | None, int] = {}

    def new_id(self, stamp: float) -> str:
        """Draw the archive id of a message archived at ``stamp`` (before storing it)."""
        return self.sequence.new_id(stamp)

    def append(self, owner: str, *, stamp: float, with_jid: str, direction: str,
               stanza: str, account: str | None = None,
               archive_id: str | None = None) -> defer.Deferred:
        """Archive one message; fires with its archive id.

        ``with_jid`` is the other party's JID (full or bare). For a personal
        archive pass ``account``: when that account does not exist (any
        more) nothing is stored and the Deferred fires with None. An
        ``archive_id`` drawn before (:meth:`new_id`) gives the row its
        ``seq``; otherwise one is drawn for ``stamp``.
        """
        row = archive_row(self.sequence, owner, stamp=stamp, with_jid=with_jid,
                          direction=direction, stanza=stanza, account=account,
                          archive_id=archive_id)
        return self.database.run(_append, row)

    def query(self, owner: str, *, with_: str | None = None, start: float | None = None,
              end: float | None = None, after_id: str | None = None,
              before_id: str | None = None, ids: Sequence[str] | None = None,
              after: str | None = None, before: str | None = None,
              index: int | None = None, limit: int, reverse: bool = False) -> defer.Deferred:
        """One page of the archive; fires with an :class:`ArchivePage`.

        The result set: the owner's messages matching every filter given:
        ``with_`` (a bare JID matches every resource, a full JID only
        itself), ``start``/``end`` (timestamps, inclusive), ``after_id`` /
        ``before_id`` (exclusive; the XEP-0313 form fields) and ``ids``
        (each of which must be in the archive).
        The page: at most ``limit`` items of it after the cursor ``after``
        or before ``before`` (RSM), or from position ``index``; with
        ``reverse`` the page is the last ``limit`` items (before ``before``
        when given) instead of the first. An unknown id in ``after_id``,
        ``before_id``, ``after``, ``before`` or ``ids`` fails with
        :class:`UnknownArchiveId` (XEP-0313 §4.1.3-4.1.4: ``item-not-found``).
        """
        return self.database.run(_query, owner, with_, start, end, after_id, before_id,
                                 list(ids) if ids is not None else None, after, before,
                                 index, limit, reverse)

    def metadata(self, owner: str) -> defer.Deferred:
        """The first and last message's id and timestamp; fires with :class:`ArchiveBounds`."""
        return self.database.run(_metadata, owner)

    def delete_owner(self, owner: str) -> defer.Deferred:
        """Delete a whole archive; fires with the number of messages deleted."""
        return self.database.run(_delete, "DELETE FROM mam_archive WHERE owner = ?", (owner,))

    def expire(self, before: float, batch: int | None = None, *,
               personal: bool | None = None) -> defer.Deferred:
        """Delete messages older than ``before``; fires with the count.

        ``personal`` picks the archives: True for the accounts' archives,
        False for everything else (rooms), None for all. With ``batch``, at
        most that many (the oldest first) in this call, so a background job
        can expire a large backlog in short transactions without holding up
        the database thread: repeat until it fires with less than ``batch``.
        Batches remember how far they got, so a later run starts there
        rather than walking again over what the other kind keeps.
        """
        cutoff = round(before * MICROSECONDS)
        kind = ""
        if personal is True:
            kind = " AND account IS NOT NULL"
        elif personal is False:
            kind = " AND account IS NULL"
        if batch is None:
            return self.database.run(
                _delete, f"DELETE FROM mam_archive WHERE seq < ?{kind}", (cutoff,))
        low = min(self._expired.get(personal, 0), cutoff)
        d = self.database.run(_expire_batch, low, cutoff, kind, batch)

        def done(result: tuple[int, int]) -> int:
            count, reached = result
            self._expired[personal] = max(self._expired.get(personal, 0), reached)
            return count

        return d.addCallback(done)

    def get(self, owner: str, archive_id: str) -> defer.Deferred:
        """One archived message by its id; fires with an :class:`ArchivedMessage` or None."""
        seq = seq_of(archive_id)
        if seq is None:
            return defer.succeed(None)
        d = self.database.query(
            f"SELECT {_COLUMNS} FROM mam_archive WHERE seq = ? AND owner = ? AND id = ?",
            seq, owner, archive_id)
        return d.addCallback(lambda rows: _message(rows[0]) if rows else None)

    def replace(self, owner: str, archive_id: str, stanza: str) -> defer.Deferred:
        """Replace an archived message's XML (a tombstone); fires with True if it was there.

        Its id, time stamp, direction and correspondent stay, so it keeps its
        place in the archive and in every query.
        """
        seq = seq_of(archive_id)
        if seq is None:
            return defer.succeed(False)
        d = self.database.run(
            _delete, "UPDATE mam_archive SET stanza = ? WHERE seq = ? AND owner = ? AND id = ?",
            (stanza, seq, owner, archive_id))
        return d.addCallback(lambda count: count > 0)

    def trim(self, owner: str, keep: int) -> defer.Deferred:
        """Delete an archive's oldest messages beyond the newest ``keep``; fires with the count."""
        if keep < 0:
            raise ValueError("keep must not be negative")
        return self.database.run(
            _delete,
            "DELETE FROM mam_archive WHERE owner = ? AND seq <= "
            "(SELECT seq FROM mam_archive WHERE owner = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (owner, owner, keep))

    def size(self, owner: str) -> defer.Deferred:
        """How many messages the archive holds."""
        d = self.database.query("SELECT COUNT(*) FROM mam_archive WHERE owner = ?", owner)
        return d.addCallback(lambda rows: rows[0][0])


#: The row of an archived message as :data:`INSERT` takes it.
INSERT = ("INSERT INTO mam_archive (seq, owner, account, id, with_bare, with_full, direction, "
          "stanza) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_COLUMNS = "seq, id, with_full, direction, stanza"


def archive_row(sequence: ArchiveSequence, owner: str, *, stamp: float, with_jid: str,
                direction: str, stanza: str, account: str | None = None,
                archive_id: str | None = None) -> tuple:
    """The :data:`INSERT` row of one message (drawing its id unless given)."""
    if direction != INCOMING and direction != OUTGOING:
        raise ValueError(f"direction must be {INCOMING!r} or {OUTGOING!r}")
    if archive_id is None:
        seq = sequence.next(stamp)
        archive_id = sequence.id_for(seq)
    else:
        seq = seq_of(archive_id)
        if seq is None:
            raise ValueError(f"not an archive id: {archive_id!r}")
    slash = with_jid.find("/")
    with_bare = with_jid if slash < 0 else with_jid[:slash]
    return (seq, owner, account, archive_id, with_bare, with_jid, direction, stanza)


def _message(row: tuple) -> ArchivedMessage:
    return ArchivedMessage(row[1], row[0] / MICROSECONDS, row[2], row[3], row[4])


def _append(cursor: sqlite3.Cursor, row: tuple) -> str | None:
    account = row[2]
    if account is not None and cursor.execute(
            "SELECT 1 FROM accounts WHERE username = ?", (account,)).fetchone() is None:
        return None
    cursor.execute(INSERT, row)
    return row[3]


def _seq_of(cursor: sqlite3.Cursor, owner: str, archive_id: str) -> int:
    seq = seq_of(archive_id)
    if seq is None or cursor.execute(
            "SELECT 1 FROM mam_archive WHERE seq = ? AND owner = ? AND id = ?",
            (seq, owner, archive_id)).fetchone() is None:
        raise UnknownArchiveId(archive_id)
    return seq


def _query(cursor: sqlite3.Cursor, owner: str, with_: str | None, start: float | None,
           end: float | None, after_id: str | None, before_id: str | None,
           ids: list[str] | None, after: str | None, before: str | None,
           index: int | None, limit: int, reverse: bool) -> ArchivePage:
    # Every term but with_full is answered from the (owner, seq, with_bare) index.
    where = ["owner = ?"]
    params: list = [owner]
    if with_ is not None:
        bare = with_.split("/", 1)[0]
        where.append("with_bare = ?")
        params.append(bare)
        if bare != with_:
            where.append("with_full = ?")
            params.append(with_)
    if start is not None:
        where.append("seq >= ?")
        params.append(round(start * MICROSECONDS))
    if end is not None:
        where.append("seq <= ?")
        params.append(round(end * MICROSECONDS))
    if after_id is not None:
        where.append("seq > ?")
        params.append(_seq_of(cursor, owner, after_id))
    if before_id is not None:
        where.append("seq < ?")
        params.append(_seq_of(cursor, owner, before_id))
    if ids is not None:
        wanted = {archive_id: seq_of(archive_id) for archive_id in ids}
        if None in wanted.values():
            raise UnknownArchiveId("not every id is in the archive")
        seqs = sorted(set(wanted.values()))
        marks = ", ".join("?" * len(seqs))
        found = dict(cursor.execute(
            f"SELECT seq, id FROM mam_archive WHERE owner = ? AND seq IN ({marks})",
            [owner, *seqs]).fetchall()) if seqs else {}
        if any(found.get(seq) != archive_id for archive_id, seq in wanted.items()):
            raise UnknownArchiveId("not every id is in the archive")
        where.append(f"seq IN ({marks})" if seqs else "0")
        params.extend(seqs)
    result_set = " AND ".join(where)
    (count,) = cursor.execute(
        f"SELECT COUNT(*) FROM mam_archive WHERE {result_set}", params).fetchone()

    page_where = list(where)
    page_params = list(params)
    if after is not None:
        page_where.append("seq > ?")
        page_params.append(_seq_of(cursor, owner, after))
    if before is not None:
        page_where.append("seq < ?")
        page_params.append(_seq_of(cursor, owner, before))
    order = "DESC" if reverse and index is None else "ASC"
    sql = (f"SELECT {_COLUMNS} FROM mam_archive WHERE {' AND '.join(page_where)} "
           f"ORDER BY seq {order} LIMIT ? OFFSET ?")
    rows = cursor.execute(sql, [*page_params, limit + 1, index or 0]).fetchall()
    complete = len(rows) <= limit
    rows = rows[:limit]
    if order == "DESC":
        rows.reverse()
    items = [_message(row) for row in rows]
    position = None
    if rows:
        if order == "ASC":
            (position,) = cursor.execute(
                f"SELECT COUNT(*) FROM mam_archive WHERE {result_set} AND seq < ?",
                [*params, rows[0][0]]).fetchone()
        else:
            (newer,) = cursor.execute(
                f"SELECT COUNT(*) FROM mam_archive WHERE {result_set} AND seq > ?",
                [*params, rows[-1][0]]).fetchone()
            position = count - newer - len(rows)
    return ArchivePage(items, count, position, complete)


def _metadata(cursor: sqlite3.Cursor, owner: str) -> ArchiveBounds:
    first = cursor.execute(
        "SELECT id, seq FROM mam_archive WHERE owner = ? ORDER BY seq ASC LIMIT 1",
        (owner,)).fetchone()
    if first is None:
        return ArchiveBounds()
    last = cursor.execute(
        "SELECT id, seq FROM mam_archive WHERE owner = ? ORDER BY seq DESC LIMIT 1",
        (owner,)).fetchone()
    return ArchiveBounds(first[0], first[1] / MICROSECONDS, last[0], last[1] / MICROSECONDS)


def _expire_batch(cursor: sqlite3.Cursor, low: int, cutoff: int, kind: str,
                  batch: int) -> tuple[int, int]:
    """Delete the oldest ``batch`` rows of a kind in [low, cutoff); (count, seq reached)."""
    rows = cursor.execute(
        f"SELECT seq FROM mam_archive WHERE seq >= ? AND seq < ?{kind} ORDER BY seq LIMIT ?",
        (low, cutoff, batch)).fetchall()
    if not rows:
        return 0, cutoff
    cursor.execute(f"DELETE FROM mam_archive WHERE seq >= ? AND seq <= ?{kind}",
                   (rows[0][0], rows[-1][0]))
    return len(rows), (rows[-1][0] + 1 if len(rows) == batch else cutoff)


def _delete(cursor: sqlite3.Cursor, sql: str, params: tuple) -> int:
    """Run one DELETE (or UPDATE); the number of rows it touched."""
    cursor.execute(sql, params)
    return cursor.rowcount
