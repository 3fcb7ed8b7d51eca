"""The message archive table (XEP-0313) and its queries.

One row per archived message. ``owner`` names the archive: an account's
bare JID for a personal archive, a room's JID for a room archive. A
personal archive's rows also carry ``account`` (the username), a foreign
key with ``ON DELETE CASCADE``: deleting the account deletes its archive.

Each row has two identities:

* ``id``: the archive id handed to clients (the XEP-0359 stanza-id and the
  XEP-0313 result id): the time in microseconds and 64 random bits, base32
  (:func:`new_archive_id`): not guessable, and growing with time so that
  its index is written at one end;
* ``seq``: an ``AUTOINCREMENT`` integer, never reused, which orders the
  archive. Timestamps only filter (``start``/``end``), so messages with
  the same timestamp keep the order they were archived in.

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

from twisted.internet import defer

#: Directions relative to the archive's owner.
INCOMING = "in"
OUTGOING = "out"


class UnknownArchiveId(LookupError):
    """An after/before id that is not in the archive (XEP-0313: ``item-not-found``)."""


#: Base32 with the "extended hex" alphabet (RFC 4648 §7, lower case), which
#: sorts as the numbers do, of every 10-bit value: two characters each.
_B32_PAIRS = tuple(a + b for a in "0123456789abcdefghijklmnopqrstuv"
                   for b in "0123456789abcdefghijklmnopqrstuv")
_SHIFTS = tuple(range(120, -1, -10))
#: Random bytes drawn ahead (one system call per 512 ids).
_RANDOM_AHEAD = 8 * 512
_random = bytearray()


def new_archive_id() -> str:
    """A fresh archive id: 26 characters of lower-case base32 (extended hex).

    Its first 64 bits are the time in microseconds, the other 64 random: ids
    cannot be guessed, and new ones sort after older ones, so the index on
    them grows at one end (random ids scatter every insert over the whole
    index: several times the disk writes per archived message). Drawn for
    every archived message on the delivery path, so built from a table
    (``base64.b32hexencode`` is pure Python and slower) and from random
    bytes drawn ahead.
    """
    global _random
    if not _random:
        _random = bytearray(os.urandom(_RANDOM_AHEAD))
    noise = int.from_bytes(_random[-8:], "big")
    del _random[-8:]
    bits = (((time.time_ns() // 1000) << 64) | noise) << 2
    pairs = _B32_PAIRS
    return "".join([pairs[(bits >> shift) & 1023] for shift in _SHIFTS])


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

    def append(self, owner: str, *, stamp: float, with_jid: str, direction: str,
               stanza: str, account: str | None = None,
               archive_id: str | None = None) -> defer.Deferred:
        """Archive one message; fires with its archive id.

        ``with_jid`` is the other party's JID (full or bare). For a personal
        archive pass ``account``: when that account does not exist (any
        more) nothing is stored and the Deferred fires with None.
        """
        if direction not in (INCOMING, OUTGOING):
            raise ValueError(f"direction must be {INCOMING!r} or {OUTGOING!r}")
        with_bare = with_jid.split("/", 1)[0]
        return self.database.run(_append, owner, account, archive_id, stamp, with_bare,
                                 with_jid, direction, stanza)

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
        """
        kind = ""
        if personal is True:
            kind = " AND account IS NOT NULL"
        elif personal is False:
            kind = " AND account IS NULL"
        if batch is None:
            return self.database.run(
                _delete, f"DELETE FROM mam_archive WHERE stamp < ?{kind}", (before,))
        return self.database.run(
            _delete, "DELETE FROM mam_archive WHERE seq IN (SELECT seq FROM mam_archive "
            f"WHERE stamp < ?{kind} ORDER BY stamp LIMIT ?)", (before, batch))

    def get(self, owner: str, archive_id: str) -> defer.Deferred:
        """One archived message by its id; fires with an :class:`ArchivedMessage` or None."""
        d = self.database.query(
            "SELECT id, stamp, with_full, direction, stanza FROM mam_archive "
            "WHERE owner = ? AND id = ?", owner, archive_id)
        return d.addCallback(lambda rows: ArchivedMessage(*rows[0]) if rows else None)

    def replace(self, owner: str, archive_id: str, stanza: str) -> defer.Deferred:
        """Replace an archived message's XML (a tombstone); fires with True if it was there.

        Its id, time stamp, direction and correspondent stay, so it keeps its
        place in the archive and in every query.
        """
        d = self.database.run(
            _delete, "UPDATE mam_archive SET stanza = ? WHERE owner = ? AND id = ?",
            (stanza, owner, archive_id))
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


def _append(cursor: sqlite3.Cursor, owner: str, account: str | None, archive_id: str | None,
            stamp: float, with_bare: str, with_full: str, direction: str,
            stanza: str) -> str | None:
    for _attempt in range(3):
        candidate = archive_id or new_archive_id()
        values = (owner, account, candidate, stamp, with_bare, with_full, direction, stanza)
        try:
            if account is None:
                cursor.execute(
                    "INSERT INTO mam_archive (owner, account, id, stamp, with_bare, with_full, "
                    "direction, stanza) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
            else:
                cursor.execute(
                    "INSERT INTO mam_archive (owner, account, id, stamp, with_bare, with_full, "
                    "direction, stanza) SELECT ?, username, ?, ?, ?, ?, ?, ? FROM accounts "
                    "WHERE username = ?",
                    (owner, candidate, stamp, with_bare, with_full, direction, stanza, account))
                if cursor.rowcount == 0:
                    return None
        except sqlite3.IntegrityError:
            if archive_id is not None:
                raise
            continue  # a random id collided: draw another
        return candidate
    raise sqlite3.IntegrityError("could not draw a unique archive id")


def _seq_of(cursor: sqlite3.Cursor, owner: str, archive_id: str) -> int:
    row = cursor.execute(
        "SELECT seq FROM mam_archive WHERE id = ? AND owner = ?", (archive_id, owner)).fetchone()
    if row is None:
        raise UnknownArchiveId(archive_id)
    return row[0]


def _query(cursor: sqlite3.Cursor, owner: str, with_: str | None, start: float | None,
           end: float | None, after_id: str | None, before_id: str | None,
           ids: list[str] | None, after: str | None, before: str | None,
           index: int | None, limit: int, reverse: bool) -> ArchivePage:
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
        where.append("stamp >= ?")
        params.append(start)
    if end is not None:
        where.append("stamp <= ?")
        params.append(end)
    if after_id is not None:
        where.append("seq > ?")
        params.append(_seq_of(cursor, owner, after_id))
    if before_id is not None:
        where.append("seq < ?")
        params.append(_seq_of(cursor, owner, before_id))
    if ids is not None:
        wanted = sorted(set(ids))
        marks = ", ".join("?" * len(wanted))
        (found,) = cursor.execute(
            f"SELECT COUNT(*) FROM mam_archive WHERE owner = ? AND id IN ({marks})",
            [owner, *wanted]).fetchone()
        if found < len(wanted):
            raise UnknownArchiveId("not every id is in the archive")
        where.append(f"id IN ({marks})" if wanted else "0")
        params.extend(wanted)
    (count,) = cursor.execute(
        f"SELECT COUNT(*) FROM mam_archive WHERE {' AND '.join(where)}", params).fetchone()
    # Counting a time range uses the (owner, stamp) index. Walking a page
    # follows seq: "+stamp" keeps the planner off the stamp index there, and
    # the time range becomes a seq range too (the first and last seq in it,
    # found on the (owner, stamp) index: the range is scanned once, as
    # COUNT does), so the walk starts where the range does.
    # Timestamps need not grow with seq: the stamp terms stay.
    walk = [term.replace("stamp", "+stamp", 1) if term.startswith("stamp") else term
            for term in where]
    walk_params = list(params)
    if start is not None:
        walk.append("seq >= ?")
        walk_params.append(cursor.execute(
            "SELECT MIN(seq) FROM mam_archive INDEXED BY mam_archive_owner_stamp "
            "WHERE owner = ? AND stamp >= ?",
            (owner, start)).fetchone()[0])
    if end is not None:
        walk.append("seq <= ?")
        walk_params.append(cursor.execute(
            "SELECT MAX(seq) FROM mam_archive INDEXED BY mam_archive_owner_stamp "
            "WHERE owner = ? AND stamp <= ?",
            (owner, end)).fetchone()[0])
    result_set = " AND ".join(walk)

    page_where = list(walk)
    page_params = list(walk_params)
    if after is not None:
        page_where.append("seq > ?")
        page_params.append(_seq_of(cursor, owner, after))
    if before is not None:
        page_where.append("seq < ?")
        page_params.append(_seq_of(cursor, owner, before))
    order = "DESC" if reverse and index is None else "ASC"
    sql = (f"SELECT seq, id, stamp, with_full, direction, stanza FROM mam_archive "
           f"WHERE {' AND '.join(page_where)} ORDER BY seq {order} LIMIT ? OFFSET ?")
    rows = cursor.execute(sql, [*page_params, limit + 1, index or 0]).fetchall()
    complete = len(rows) <= limit
    rows = rows[:limit]
    if order == "DESC":
        rows.reverse()
    items = [ArchivedMessage(r[1], r[2], r[3], r[4], r[5]) for r in rows]
    position = None
    if rows:
        if order == "ASC":
            (position,) = cursor.execute(
                f"SELECT COUNT(*) FROM mam_archive WHERE {result_set} AND seq < ?",
                [*walk_params, rows[0][0]]).fetchone()
        else:
            (newer,) = cursor.execute(
                f"SELECT COUNT(*) FROM mam_archive WHERE {result_set} AND seq > ?",
                [*walk_params, rows[-1][0]]).fetchone()
            position = count - newer - len(rows)
    return ArchivePage(items, count, position, complete)


def _metadata(cursor: sqlite3.Cursor, owner: str) -> ArchiveBounds:
    first = cursor.execute(
        "SELECT id, stamp FROM mam_archive WHERE owner = ? ORDER BY seq ASC LIMIT 1",
        (owner,)).fetchone()
    if first is None:
        return ArchiveBounds()
    last = cursor.execute(
        "SELECT id, stamp FROM mam_archive WHERE owner = ? ORDER BY seq DESC LIMIT 1",
        (owner,)).fetchone()
    return ArchiveBounds(first[0], first[1], last[0], last[1])


def _delete(cursor: sqlite3.Cursor, sql: str, params: tuple) -> int:
    """Run one DELETE (or UPDATE); the number of rows it touched."""
    cursor.execute(sql, params)
    return cursor.rowcount
