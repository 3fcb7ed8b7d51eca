"""Rosters and pending subscription requests (RFC 6121 sections 2 and 3).

A roster item keeps the subscription state of one contact as the four
columns of ``roster_items``: ``subscription`` ('none', 'to', 'from' or
'both'), ``ask`` (an outbound request is pending, RFC 6121 "Pending Out"),
``approved`` (the user pre-approved the contact's request, section 3.4) and
the JSON list of groups. Inbound requests not yet answered ("Pending In")
live in ``pending_subscriptions`` as stanza XML, delivered when the user
next sends initial presence (section 3.1.3); the session manager keeps only
the request's addressing, id and XEP-0172 nick there
(:mod:`xmppd.sm.subscriptions`).

Roster versions (section 2.6) are one integer per user in
``roster_versions``, raised by one in the same transaction as every change
of an item (saving or removing it); a user without a row (no change since
the account was created) is at version 0 with an empty roster. A user's
first change starts the count at a random number, so that an account
deleted and created again under the same name does not repeat the versions
a client may have cached for the old one. The row goes with the account.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.storage.database import Database, rows_where_in

NS_ROSTER = "jabber:iq:roster"

#: The first version of a user's roster is drawn from [1, FIRST_VERSION_RANGE].
FIRST_VERSION_RANGE = 2**31 - 1

_SUBSCRIPTIONS = {
    (False, False): "none",
    (True, False): "to",
    (False, True): "from",
    (True, True): "both",
}


@dataclass
class RosterItem:
    """One contact in a user's roster; ``contact`` is a normalised bare JID."""

    contact: str
    name: str | None = None
    subscription: str = "none"
    ask: bool = False
    approved: bool = False
    groups: list[str] = field(default_factory=list)

    @property
    def subscribed_to(self) -> bool:
        """True if the user receives the contact's presence ('to' or 'both')."""
        return self.subscription in ("to", "both")

    @property
    def subscribed_from(self) -> bool:
        """True if the contact receives the user's presence ('from' or 'both')."""
        return self.subscription in ("from", "both")

    def set_subscription(self, *, to: bool | None = None, from_: bool | None = None) -> None:
        """Change one or both directions of the subscription."""
        to = self.subscribed_to if to is None else to
        from_ = self.subscribed_from if from_ is None else from_
        self.subscription = _SUBSCRIPTIONS[(to, from_)]

    def to_element(self) -> domish.Element:
        """The ``<item/>`` of a roster result or push (RFC 6121 2.1.2)."""
        element = domish.Element((NS_ROSTER, "item"))
        element["jid"] = self.contact
        if self.name:
            element["name"] = self.name
        element["subscription"] = self.subscription
        if self.ask:
            element["ask"] = "subscribe"
        if self.approved:
            element["approved"] = "true"
        for group in self.groups:
            element.addElement("group", content=group)
        return element


def removal_element(contact: str) -> domish.Element:
    """The ``<item subscription='remove'/>`` of a roster push after a removal."""
    element = domish.Element((NS_ROSTER, "item"))
    element["jid"] = contact
    element["subscription"] = "remove"
    return element


class RosterStore:
    """Roster items and pending inbound subscription requests in SQLite."""

    def __init__(self, database: Database):
        self.db = database

    @defer.inlineCallbacks
    def items(self, username: str):
        """Fire with the user's roster as a dict: contact bare JID -> RosterItem."""
        rows = yield self.db.query(
            "SELECT contact, name, subscription, ask, approved, groups "
            "FROM roster_items WHERE username = ? ORDER BY contact",
            username,
        )
        return {row[0]: _item_from_row(row) for row in rows}

    @defer.inlineCallbacks
    def item(self, username: str, contact: str):
        """Fire with one roster item of the user (None if the contact is not on it).

        One row by the primary key: what a probe of an offline user needs,
        instead of the whole roster.
        """
        rows = yield self.db.query(
            "SELECT contact, name, subscription, ask, approved, groups "
            "FROM roster_items WHERE username = ? AND contact = ?",
            username, contact,
        )
        return _item_from_row(rows[0]) if rows else None

    def items_naming(self, contact: str, usernames: list[str]) -> defer.Deferred:
        """Fire with {username: item} for those of the users whose roster holds ``contact``.

        One query for the lot (by primary key): a user who logs in probes
        every contact, and this answers the probes of offline ones at once.
        """
        return self.db.read(_read_items_naming, contact, usernames)

    def version(self, username: str) -> defer.Deferred:
        """Fire with the user's roster version (0 if the roster never changed)."""
        return self.db.read(_read_version, username)

    def save(self, username: str, item: RosterItem) -> defer.Deferred:
        """Insert or replace one roster item; fires with the new roster version."""
        return self.db.run(
            _change_and_bump,
            username,
            "INSERT OR REPLACE INTO roster_items "
            "(username, contact, name, subscription, ask, approved, groups) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                username,
                item.contact,
                item.name,
                item.subscription,
                int(item.ask),
                int(item.approved),
                json.dumps(list(item.groups)),
            ),
        )

    def remove(self, username: str, contact: str) -> defer.Deferred:
        """Delete one roster item; fires with the new version, or None if there was none."""
        return self.db.run(
            _change_and_bump,
            username,
            "DELETE FROM roster_items WHERE username = ? AND contact = ?",
            (username, contact),
        )

    @defer.inlineCallbacks
    def pending(self, username: str):
        """Fire with the pending inbound requests: a list of (contact, stanza XML)."""
        rows = yield self.db.query(
            "SELECT contact, stanza FROM pending_subscriptions WHERE username = ? ORDER BY rowid",
            username,
        )
        return [(contact, stanza) for contact, stanza in rows]

    def add_pending(self, username: str, contact: str, stanza_xml: str) -> defer.Deferred:
        """Keep an inbound subscription request (replacing an older one)."""
        return self.db.execute(
            "INSERT OR REPLACE INTO pending_subscriptions (username, contact, stanza) "
            "VALUES (?, ?, ?)",
            username,
            contact,
            stanza_xml,
        )

    def remove_pending(self, username: str, contact: str) -> defer.Deferred:
        """Forget an inbound request; fires with True if there was one."""
        return self.db.run(
            _delete_returning_count,
            "DELETE FROM pending_subscriptions WHERE username = ? AND contact = ?",
            (username, contact),
        )


def _item_from_row(row) -> RosterItem:
    contact, name, subscription, ask, approved, groups = row
    if groups == "[]":
        group_list = []  # most items: no JSON to decode
    else:
        try:
            group_list = [str(g) for g in json.loads(groups)]
        except (TypeError, ValueError):
            group_list = []
    return RosterItem(
        contact=contact,
        name=name,
        subscription=subscription if subscription in _SUBSCRIPTIONS.values() else "none",
        ask=bool(ask),
        approved=bool(approved),
        groups=group_list,
    )


def _read_items_naming(cursor, contact: str, usernames: list[str]) -> dict[str, RosterItem]:
    rows = rows_where_in(
        cursor,
        "SELECT username, contact, name, subscription, ask, approved, groups "
        "FROM roster_items WHERE contact = ? AND username IN ({marks})",
        (contact,), usernames,
    )
    return {row[0]: _item_from_row(row[1:]) for row in rows}


def _read_version(cursor, username: str) -> int:
    cursor.execute("SELECT version FROM roster_versions WHERE username = ?", (username,))
    row = cursor.fetchone()
    return int(row[0]) if row is not None else 0


def _change_and_bump(cursor, username: str, sql: str, params: tuple) -> int | None:
    """Run a change of the user's items and raise the version; None if nothing changed."""
    cursor.execute(sql, params)
    if cursor.rowcount <= 0:
        return None
    cursor.execute(
        "INSERT INTO roster_versions (username, version) VALUES (?, ?) "
        "ON CONFLICT (username) DO UPDATE SET version = version + 1",
        (username, secrets.randbelow(FIRST_VERSION_RANGE) + 1),
    )
    return _read_version(cursor, username)


def _delete_returning_count(cursor, sql: str, params: tuple) -> bool:
    cursor.execute(sql, params)
    return cursor.rowcount > 0
