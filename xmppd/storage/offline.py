"""Offline messages (RFC 6121 8.5.2.2.1): kept complete, delivered in order.

Each row holds one stanza serialised as XML (with its XEP-0203 delay element
already added) and the UTC time it was stored. A per-user cap keeps one
account from filling the disk.
"""

from __future__ import annotations

from twisted.internet import defer

from xmppd.storage.database import Database

DEFAULT_LIMIT = 1000


class OfflineStore:
    """Stored messages for users who had no available resource."""

    def __init__(self, database: Database, limit: int = DEFAULT_LIMIT):
        self.db = database
        self.limit = limit

    def store(self, username: str, stamp: str, stanza_xml: str) -> defer.Deferred:
        """Append a message; fires with False (nothing stored) if the user's box is full."""
        return self.db.run(_store, username, stamp, stanza_xml, self.limit)

    @defer.inlineCallbacks
    def fetch(self, username: str):
        """Fire with the user's messages, oldest first: a list of (id, stamp, stanza XML)."""
        rows = yield self.db.query(
            "SELECT id, stamp, stanza FROM offline_messages WHERE username = ? ORDER BY id",
            username,
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def delete(self, username: str, ids: list[int]) -> defer.Deferred:
        """Delete delivered messages by id."""
        return self.db.run(_delete, username, list(ids))

    @defer.inlineCallbacks
    def count(self, username: str):
        """Fire with the number of messages stored for the user."""
        rows = yield self.db.query(
            "SELECT COUNT(*) FROM offline_messages WHERE username = ?", username
        )
        return rows[0][0]


def _store(cursor, username: str, stamp: str, stanza_xml: str, limit: int) -> bool:
    (count,) = cursor.execute(
        "SELECT COUNT(*) FROM offline_messages WHERE username = ?", (username,)
    ).fetchone()
    if count >= limit:
        return False
    cursor.execute(
        "INSERT INTO offline_messages (username, stamp, stanza) VALUES (?, ?, ?)",
        (username, stamp, stanza_xml),
    )
    return True


def _delete(cursor, username: str, ids: list[int]) -> None:
    cursor.executemany(
        "DELETE FROM offline_messages WHERE username = ? AND id = ?",
        [(username, i) for i in ids],
    )
