"""Persistent MUC rooms: configuration (with the secret), affiliations, subject.

Tables (migration 2): ``muc_rooms(service, name, config JSON, subject,
subject_from, updated)`` (``subject_by``, who set the subject: migration 6)
and ``muc_affiliations(service, room, jid, affiliation, reason, nick)``,
the latter cascade-deleted with its room.
A save replaces a room's rows in one transaction.

Rooms with logging enabled kept their conversation in ``muc_log``
(migration 3); migration 7 moved it to the message archive (``mam_archive``,
:mod:`xmppd.muc.features.archive`) and dropped the table.

A service's secrets that must outlive restarts (the occupant-id key) are
in ``service_secrets(service, name, secret)`` (migration 5).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer


@dataclass
class RoomRecord:
    """The stored state of one persistent room."""

    name: str
    config: dict[str, Any]
    subject: str = ""
    subject_from: str | None = None
    #: The bare JID of whoever set the subject (None for older rooms).
    subject_by: str | None = None
    affiliations: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)


class RoomStore:
    """Reads and writes persistent rooms in the xmppd database."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def load(self, service: str) -> defer.Deferred:
        """Fires with the list of :class:`RoomRecord` of a MUC domain."""
        return self.db.run(_load, service)

    def save(self, service: str, name: str, record: dict[str, Any]) -> defer.Deferred:
        """Store (replace) a room; ``record`` is :meth:`Room.to_record` output."""
        return self.db.run(_save, service, name, record)

    def secret(self, service: str, name: str, candidate: str) -> defer.Deferred:
        """Fires with the service's stored secret ``name``; ``candidate`` is stored if none is."""
        return self.db.run(_secret, service, name, candidate)

    def delete(self, service: str, name: str) -> defer.Deferred:
        """Forget a room (no-op if it is not stored)."""
        return self.db.run(_delete, service, name)


def _load(cursor: sqlite3.Cursor, service: str) -> list[RoomRecord]:
    rooms: dict[str, RoomRecord] = {}
    rows = cursor.execute(
        "SELECT name, config, subject, subject_from, subject_by FROM muc_rooms"
        " WHERE service = ? ORDER BY name",
        (service,),
    ).fetchall()
    for name, config, subject, subject_from, subject_by in rows:
        rooms[name] = RoomRecord(
            name, json.loads(config), subject or "", subject_from, subject_by
        )
    rows = cursor.execute(
        "SELECT room, jid, affiliation, reason, nick FROM muc_affiliations WHERE service = ?"
        " ORDER BY room, jid",
        (service,),
    ).fetchall()
    for room, bare, affiliation, reason, nick in rows:
        if room in rooms:
            rooms[room].affiliations.append((bare, affiliation, reason, nick))
    return list(rooms.values())


def _save(cursor: sqlite3.Cursor, service: str, name: str, record: dict[str, Any]) -> None:
    cursor.execute(
        "INSERT INTO muc_rooms (service, name, config, subject, subject_from, subject_by,"
        " updated) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (service, name) DO UPDATE SET config = excluded.config,"
        " subject = excluded.subject, subject_from = excluded.subject_from,"
        " subject_by = excluded.subject_by, updated = excluded.updated",
        (
            service,
            name,
            json.dumps(record["config"], sort_keys=True),
            record.get("subject") or "",
            record.get("subject_from"),
            record.get("subject_by"),
            time.time(),
        ),
    )
    cursor.execute("DELETE FROM muc_affiliations WHERE service = ? AND room = ?", (service, name))
    cursor.executemany(
        "INSERT INTO muc_affiliations (service, room, jid, affiliation, reason, nick)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(service, name, *entry) for entry in record.get("affiliations", [])],
    )


def _delete(cursor: sqlite3.Cursor, service: str, name: str) -> None:
    cursor.execute("DELETE FROM muc_rooms WHERE service = ? AND name = ?", (service, name))


def _secret(cursor: sqlite3.Cursor, service: str, name: str, candidate: str) -> str:
    cursor.execute(
        "INSERT OR IGNORE INTO service_secrets (service, name, secret) VALUES (?, ?, ?)",
        (service, name, candidate),
    )
    cursor.execute(
        "SELECT secret FROM service_secrets WHERE service = ? AND name = ?", (service, name)
    )
    return cursor.fetchone()[0]
