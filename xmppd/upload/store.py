"""Upload slots and files: rows in the ``uploads`` table, files in ``DATA_DIR/uploads``.

A slot (a row with ``uploaded`` NULL) is created by a slot request; its PUT
writes the body into a temporary file in the same folder and renames it to
the slot's id (atomic), then marks the row uploaded. Deleting uploads
deletes the rows, then the files. Slot ids are random URL-safe strings of
:data:`ID_LENGTH` characters; nothing else names a file, so a URL cannot
reach outside the folder.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer

from xmppd.logs import logger

log = logger(__name__)

#: Characters of a slot id (``secrets.token_urlsafe(24)``: 144 random bits).
ID_LENGTH = 32
_ID = re.compile(r"^[A-Za-z0-9_-]{%d}$" % ID_LENGTH)
_COLUMNS = "id, owner, filename, size, content_type, created, slot_expires, uploaded"


def new_slot_id() -> str:
    """An unguessable slot id."""
    return secrets.token_urlsafe(24)


def valid_slot_id(text: str) -> bool:
    """True for something that can be a slot id (and so a file name)."""
    return bool(_ID.match(text))


@dataclass(frozen=True)
class Upload:
    """One slot or uploaded file."""

    id: str
    owner: str
    filename: str
    size: int
    content_type: str
    created: float
    slot_expires: float
    uploaded: float | None


class UploadStore:
    """The uploads of every account: rows in ``database``, files in ``folder``."""

    def __init__(self, database: Any, folder: Path):
        self.db = database
        self.folder = Path(folder)

    def ensure_folder(self) -> None:
        """Create the files' folder (private to the server's user)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, slot_id: str) -> Path:
        """The file of an (already validated) slot id."""
        if not valid_slot_id(slot_id):
            raise ValueError(f"not a slot id: {slot_id!r}")
        return self.folder / slot_id

    def add(self, upload: Upload) -> defer.Deferred:
        """Store a new slot."""
        return self.db.execute(
            f"INSERT INTO uploads ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            upload.id, upload.owner, upload.filename, upload.size, upload.content_type,
            upload.created, upload.slot_expires, upload.uploaded)

    @defer.inlineCallbacks
    def get(self, slot_id: str):
        """Fire with the :class:`Upload` of an id, or None."""
        rows = yield self.db.query(f"SELECT {_COLUMNS} FROM uploads WHERE id = ?", slot_id)
        return Upload(*rows[0]) if rows else None

    def reserve(self, upload: Upload, quota: int, max_open_slots: int) -> defer.Deferred:
        """Store a new slot if the account has room; fires with None or what it lacks.

        The check and the insert are one transaction, so simultaneous
        requests cannot together take an account over its limits. Fires
        with ``"quota"`` (kept files and live slots plus this one would
        exceed ``quota``; 0 = no quota), ``"slots"`` (``max_open_slots``
        slots are open already) or None (stored).
        """

        def reserve(cursor: Any) -> str | None:
            used, open_slots = _usage(cursor, upload.owner, upload.created)
            if quota and used + upload.size > quota:
                return "quota"
            if open_slots >= max_open_slots:
                return "slots"
            cursor.execute(
                f"INSERT INTO uploads ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (upload.id, upload.owner, upload.filename, upload.size, upload.content_type,
                 upload.created, upload.slot_expires, upload.uploaded))
            return None

        return self.db.run(reserve)

    @defer.inlineCallbacks
    def mark_uploaded(self, slot_id: str, now: float):
        """Record a finished PUT; fires with False if the slot was used already."""

        def mark(cursor: Any) -> bool:
            cursor.execute("UPDATE uploads SET uploaded = ? WHERE id = ? AND uploaded IS NULL",
                           (now, slot_id))
            return cursor.rowcount == 1

        return (yield self.db.run(mark))

    @defer.inlineCallbacks
    def list(self, owner: str | None = None):
        """Fire with the uploads (files and open slots), oldest first."""
        if owner is None:
            rows = yield self.db.query(f"SELECT {_COLUMNS} FROM uploads ORDER BY created, id")
        else:
            rows = yield self.db.query(
                f"SELECT {_COLUMNS} FROM uploads WHERE owner = ? ORDER BY created, id", owner)
        return [Upload(*row) for row in rows]

    def _delete_where(self, where: str, *params: Any) -> defer.Deferred:
        def delete(cursor: Any) -> list[str]:
            ids = [row[0] for row in cursor.execute(
                f"SELECT id FROM uploads WHERE {where}", params).fetchall()]
            cursor.executemany("DELETE FROM uploads WHERE id = ?", [(i,) for i in ids])
            return ids

        d = self.db.run(delete)
        d.addCallback(self._remove_files)
        return d

    def delete_owner(self, owner: str) -> defer.Deferred:
        """Delete an account's uploads, files too; fires with the ids deleted."""
        return self._delete_where("owner = ?", owner)

    def delete_older_than(self, cutoff: float, owner: str | None = None) -> defer.Deferred:
        """Delete uploads (and slots) created before ``cutoff``; fires with the ids."""
        if owner is None:
            return self._delete_where("created < ?", cutoff)
        return self._delete_where("created < ? AND owner = ?", cutoff, owner)

    def expire(self, now: float, expire_after: float) -> defer.Deferred:
        """The background sweep; fires with the ids deleted.

        Goes: files older than ``expire_after`` seconds (unless 0), slots
        whose PUT URL expired unused, and the uploads of accounts that no
        longer exist (deleted while the server was not running).
        """
        where = ["(uploaded IS NULL AND slot_expires <= ?)",
                 "owner NOT IN (SELECT username FROM accounts)"]
        params: list[Any] = [now]
        if expire_after > 0:
            where.append("created < ?")
            params.append(now - expire_after)
        return self._delete_where(" OR ".join(where), *params)

    def _remove_files(self, ids: list[str]) -> list[str]:
        for slot_id in ids:
            remove_file(self.folder / slot_id)
        return ids

    def remove_stray_temp_files(self) -> None:
        """Delete temporary PUT files a crash left behind (at start-up)."""
        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                remove_file(entry)


def _usage(cursor: Any, owner: str, now: float) -> tuple[int, int]:
    """(bytes kept or reserved by live slots, open slots) of an account."""
    used, open_slots = cursor.execute(
        "SELECT COALESCE(SUM(size), 0), COALESCE(SUM(uploaded IS NULL), 0) FROM uploads "
        "WHERE owner = ? AND (uploaded IS NOT NULL OR slot_expires > ?)", (owner, now)).fetchone()
    return int(used), int(open_slots)


#: How temporary files of PUTs in progress start (never a slot id: ids have no dot).
TEMP_PREFIX = ".put-"


def remove_file(path: Path) -> None:
    """Delete a file; a missing one is fine, other errors are logged."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn("cannot delete {path}: {error}", path=str(path), error=e.strerror)
