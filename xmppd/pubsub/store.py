"""Pubsub storage: nodes, items, affiliations and subscriptions of every service.

A service is named by its address: a user's bare JID for PEP, the pubsub
component's domain for the standalone service. PEP nodes carry the
account's username, so deleting an account deletes its nodes and, through
the node keys, their items, affiliations and subscriptions; subscriptions
of local users carry theirs too, so they go with the subscriber's account.

The engine keeps a loaded service in memory (nodes, configuration,
affiliations, subscriptions, each node's last item) and writes every change
through here; items beyond the last are read from the database on request.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from twisted.internet import defer

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS pubsub_nodes (
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        account TEXT REFERENCES accounts(username) ON DELETE CASCADE,
        config TEXT NOT NULL,
        PRIMARY KEY (service, node)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS pubsub_items (
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        id TEXT NOT NULL,
        publisher TEXT NOT NULL,
        xml TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (service, node, id),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes(service, node)
            ON DELETE CASCADE ON UPDATE CASCADE
    )
    """,
    "CREATE INDEX IF NOT EXISTS pubsub_items_by_seq ON pubsub_items (service, node, seq)",
    """
    CREATE TABLE IF NOT EXISTS pubsub_affiliations (
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        jid TEXT NOT NULL,
        affiliation TEXT NOT NULL,
        PRIMARY KEY (service, node, jid),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes(service, node) ON DELETE CASCADE
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS pubsub_subscriptions (
        service TEXT NOT NULL,
        node TEXT NOT NULL,
        jid TEXT NOT NULL,
        subid TEXT NOT NULL,
        deliver INTEGER NOT NULL DEFAULT 1,
        account TEXT REFERENCES accounts(username) ON DELETE CASCADE,
        PRIMARY KEY (service, node, jid),
        FOREIGN KEY (service, node) REFERENCES pubsub_nodes(service, node) ON DELETE CASCADE
    )
    """,
)


def account_cleanup(domain: str) -> tuple[str, ...]:
    """Statements (re)making the trigger that drops a deleted account's affiliations.

    Affiliations name bare JIDs and reference no account, so without it a
    new account of the same name would inherit the old one's memberships
    of other people's whitelist nodes. Made anew at every start: the
    domain is part of it.
    """
    literal = "'" + domain.replace("'", "''") + "'"
    return (
        "DROP TRIGGER IF EXISTS pubsub_affiliations_of_deleted_accounts",
        "CREATE TRIGGER pubsub_affiliations_of_deleted_accounts AFTER DELETE ON accounts "
        "BEGIN DELETE FROM pubsub_affiliations WHERE jid = OLD.username || '@' || "
        f"{literal}; END",
    )


@dataclass
class StoredService:
    """Everything of one service the engine keeps in memory, as rows."""

    nodes: list[tuple[str, str]]
    affiliations: list[tuple[str, str, str]]
    subscriptions: list[tuple[str, str, str, int]]
    last_items: list[tuple[str, str, str, str]]


class PubSubStore:
    """The pubsub tables (see the module docstring)."""

    def __init__(self, database):
        self.database = database

    def load(self, service: str) -> defer.Deferred:
        """Fire with the service's :class:`StoredService`."""
        return self.database.read(_load, service)

    def create_node(self, service: str, node: str, account: str | None, config: str,
                    owner: str | None) -> defer.Deferred:
        """Store a new node (and its creator's owner affiliation)."""
        return self.database.run(_create, service, node, account, config, owner)

    def configure(self, service: str, node: str, config: str) -> defer.Deferred:
        """Store a node's new configuration."""
        return self.database.execute(
            "UPDATE pubsub_nodes SET config = ? WHERE service = ? AND node = ?",
            config, service, node)

    def delete_node(self, service: str, node: str) -> defer.Deferred:
        """Delete a node with its items, affiliations and subscriptions."""
        return self.database.execute(
            "DELETE FROM pubsub_nodes WHERE service = ? AND node = ?", service, node)

    def publish(self, service: str, node: str, item_id: str, publisher: str, xml: str,
                keep: int) -> defer.Deferred:
        """Store an item as the node's newest, keeping the ``keep`` newest."""
        return self.database.run(_publish, service, node, item_id, publisher, xml, keep)

    def trim(self, service: str, node: str, keep: int) -> defer.Deferred:
        """Keep only the ``keep`` newest items of a node (0: none)."""
        return self.database.run(_trim, service, node, keep)

    def retract(self, service: str, node: str, ids: list[str]) -> defer.Deferred:
        """Delete items by id; fires with the ids that existed."""
        return self.database.run(_retract, service, node, ids)

    def items(self, service: str, node: str, limit: int | None = None,
              ids: list[str] | None = None) -> defer.Deferred:
        """Fire with (id, publisher, xml) rows, oldest first.

        With ``limit``, the newest ``limit``; with ``ids``, just those.
        """
        return self.database.run(_items, service, node, limit, ids)

    def set_affiliation(self, service: str, node: str, entity: str,
                        affiliation: str) -> defer.Deferred:
        """Store an affiliation (``none`` deletes it)."""
        if affiliation == "none":
            return self.database.execute(
                "DELETE FROM pubsub_affiliations WHERE service = ? AND node = ? AND jid = ?",
                service, node, entity)
        return self.database.execute(
            "INSERT INTO pubsub_affiliations (service, node, jid, affiliation) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(service, node, jid) "
            "DO UPDATE SET affiliation = excluded.affiliation",
            service, node, entity, affiliation)

    def subscribe(self, service: str, node: str, subscriber: str, subid: str, deliver: bool,
                  account: str | None) -> defer.Deferred:
        """Store (or update) a subscription."""
        return self.database.execute(
            "INSERT INTO pubsub_subscriptions (service, node, jid, subid, deliver, account) "
            "SELECT ?, ?, ?, ?, ?, ? WHERE ? IS NULL OR EXISTS "
            "(SELECT 1 FROM accounts WHERE username = ?) "
            "ON CONFLICT(service, node, jid) DO UPDATE SET deliver = excluded.deliver",
            service, node, subscriber, subid, int(deliver), account, account, account)

    def unsubscribe(self, service: str, node: str, subscriber: str) -> defer.Deferred:
        """Delete a subscription."""
        return self.database.execute(
            "DELETE FROM pubsub_subscriptions WHERE service = ? AND node = ? AND jid = ?",
            service, node, subscriber)


def _load(cursor: sqlite3.Cursor, service: str) -> StoredService:
    nodes = cursor.execute(
        "SELECT node, config FROM pubsub_nodes WHERE service = ?", (service,)).fetchall()
    affiliations = cursor.execute(
        "SELECT node, jid, affiliation FROM pubsub_affiliations WHERE service = ?",
        (service,)).fetchall()
    subscriptions = cursor.execute(
        "SELECT node, jid, subid, deliver FROM pubsub_subscriptions WHERE service = ?",
        (service,)).fetchall()
    # SQLite takes the other columns from the row that has the MAX().
    last = cursor.execute(
        "SELECT node, id, publisher, xml, MAX(seq) FROM pubsub_items WHERE service = ? "
        "GROUP BY node", (service,)).fetchall()
    return StoredService(nodes, affiliations, subscriptions, [row[:4] for row in last])


def _create(cursor: sqlite3.Cursor, service: str, node: str, account: str | None, config: str,
            owner: str | None) -> None:
    cursor.execute(
        "INSERT INTO pubsub_nodes (service, node, account, config) VALUES (?, ?, ?, ?)",
        (service, node, account, config))
    if owner is not None:
        cursor.execute(
            "INSERT INTO pubsub_affiliations (service, node, jid, affiliation) "
            "VALUES (?, ?, ?, 'owner')", (service, node, owner))


def _publish(cursor: sqlite3.Cursor, service: str, node: str, item_id: str, publisher: str,
             xml: str, keep: int) -> None:
    cursor.execute("DELETE FROM pubsub_items WHERE service = ? AND node = ? AND id = ?",
                   (service, node, item_id))
    cursor.execute(
        "INSERT INTO pubsub_items (service, node, id, publisher, xml, seq) "
        "SELECT ?, ?, ?, ?, ?, COALESCE(MAX(seq), 0) + 1 FROM pubsub_items "
        "WHERE service = ? AND node = ?",
        (service, node, item_id, publisher, xml, service, node))
    _trim(cursor, service, node, keep)


def _trim(cursor: sqlite3.Cursor, service: str, node: str, keep: int) -> None:
    cursor.execute(
        "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND seq <= "
        "(SELECT seq FROM pubsub_items WHERE service = ? AND node = ? "
        "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        (service, node, service, node, keep))


def _retract(cursor: sqlite3.Cursor, service: str, node: str, ids: list[str]) -> list[str]:
    gone = []
    for item_id in ids:
        cursor.execute("DELETE FROM pubsub_items WHERE service = ? AND node = ? AND id = ?",
                       (service, node, item_id))
        if cursor.rowcount:
            gone.append(item_id)
    return gone


def _items(cursor: sqlite3.Cursor, service: str, node: str, limit: int | None,
           ids: list[str] | None) -> list[tuple[str, str, str]]:
    if ids is not None:
        marks = ",".join("?" * len(ids))
        rows = cursor.execute(
            f"SELECT id, publisher, xml FROM pubsub_items WHERE service = ? AND node = ? "
            f"AND id IN ({marks}) ORDER BY seq", (service, node, *ids)).fetchall()
        return rows
    rows = cursor.execute(
        "SELECT id, publisher, xml FROM pubsub_items WHERE service = ? AND node = ? "
        "ORDER BY seq DESC LIMIT ?", (service, node, -1 if limit is None else limit)).fetchall()
    rows.reverse()
    return rows
