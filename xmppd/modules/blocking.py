"""Blocking Command (XEP-0191): a user's list of addresses they exchange nothing with.

Protocol, from one of the account's own resources (anybody else gets
``service-unavailable``, as from Prosody's mod_blocklist):

* get ``<blocklist/>``: the blocked JIDs; the resource now gets pushes.
* set ``<block>`` with ``<item jid=.../>`` children: add them (at least
  one, else ``bad-request``); set ``<unblock>``: remove them, or everything
  when it has no item. A JID that does not parse gets ``jid-malformed``
  (nothing changes); items are kept normalised (as ``parse_jid`` gives
  them), in any form: domain, bare, full, domain/resource.
* The result comes first, then the push (an iq set with the ``<block>`` or
  ``<unblock>``, its items normalised) to every resource of the user that
  requested the blocklist (XEP-0191 §3.3, as Prosody).
* A list is limited to ``[blocking] max_items`` JIDs; a block beyond it is
  refused whole with ``not-acceptable`` and a text (retrying will not help:
  ``resource-constraint`` is a temporary, ``wait`` condition).

Matching (XEP-0191 §3.3 refers to XEP-0016's JID matching): an item blocks
an address when it is the address's full JID, its bare JID or its domain;
so a domain/resource item blocks that address only, a bare item all of its
resources, a domain item everything at that domain.

Enforcement (the user's own account and the server's JID are never
blocked):

* Inbound, at ``Point.INBOUND_STANZA`` (before delivery, offline storage,
  presence and subscription processing and the account's iq handlers):
  from a blocked address, chat/normal messages and iq get/set get
  ``service-unavailable``; presence (subscription requests and probes
  too), other messages and iq results/errors are dropped (§3.3; errors
  are never answered).
* Outbound, at ``Point.CLIENT_STANZA``: a stanza a client sends to a
  blocked address is refused with ``not-acceptable`` (type ``cancel``, as
  in XEP-0191's example) and ``<blocked xmlns='urn:xmpp:blocking:errors'/>``
  (§3.3); errors and iq
  results are dropped silently (as Prosody).
* Presence the server sends on the user's behalf (broadcast, probes, after
  subscription changes), at ``Point.ROUTE_PRESENCE``: available,
  unavailable and probes to a blocked address are dropped; subscription
  stanzas (e.g. from a roster removal) pass.
* Blocking a contact subscribed to the user's presence sends it
  unavailable presence from each available resource; unblocking one (also
  by unblocking everything) sends it their current presence (§3.3, §3.4,
  §3.5; Prosody sends none on unblock-all, the XEP asks for it). Blocking
  deletes the stored subscription requests of the addresses it blocks
  (they could not be answered: Prosody drops them too).

Storage: the module's table, rows deleted with the account. Every
non-empty list is kept in memory (loaded at start-up, changed with the
table, read again for a user at each bind, which catches an account
deleted with ``xmppdctl`` while the server ran): stanzas for users who are
offline (offline messages, subscription requests, iqs to the bare JID) are
checked too, synchronously, and a user without a list costs one dict
lookup per stanza. ``max_items`` bounds what one user adds to that memory.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.config import setting
from xmppd.errors import StanzaError, error_reply
from xmppd.logs import logger
from xmppd.module import ALREADY_ANSWERED, IQRequest, Module, Point, Scope, hook, iq_handler
from xmppd.sm.stanzas import SUBSCRIPTION_TYPES, result_for

log = logger(__name__)

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS blocklist (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        jid TEXT NOT NULL,
        PRIMARY KEY (username, jid)
    )
    """,
)


@dataclass(frozen=True)
class BlockingSettings:
    """``[blocking]``: how many JIDs one user may block (XEP-0191)."""

    max_items: int = setting(
        1000, "JIDs one user may block (XEP-0191)", minimum=1, live=True)


def is_blocked(items: set[str] | frozenset[str], address: jid.JID) -> bool:
    """True when an item of the list is the address's domain, bare or full JID."""
    if address.host in items:
        return True
    if address.user is not None and address.userhost() in items:
        return True
    return address.resource is not None and address.full() in items


class Blocking(Module):
    """urn:xmpp:blocking: the blocklist, its pushes and its enforcement."""

    name = "blocking"
    features = {Scope.SERVER: [NS_BLOCKING]}
    schema = SCHEMA
    settings = BlockingSettings

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        #: Username -> its blocked JIDs (only users with a non-empty list).
        self.lists: dict[str, set[str]] = {}
        #: Sessions that requested the blocklist (they get pushes).
        self._interested: set = set()

    def startService(self) -> None:  # noqa: N802 - Twisted's API
        """Load every stored list (queued after the table's creation)."""
        super().startService()
        d = self.server.database.query("SELECT username, jid FROM blocklist")
        d.addCallback(self._loaded)
        self.server.sessions.guard(d, None)

    def _loaded(self, rows: list[tuple[str, str]]) -> None:
        lists: dict[str, set[str]] = {}
        for username, address in rows:
            lists.setdefault(username, set()).add(address)
        self.lists = lists

    # -- the protocol ----------------------------------------------------------------

    @iq_handler("get", NS_BLOCKING, "blocklist", Scope.ACCOUNT)
    def blocklist(self, request: IQRequest) -> domish.Element:
        """The blocked JIDs; the requesting resource gets pushes from now on."""
        _owner_only(request)
        state = self.server.sessions.state_for(request.sender)
        if state is not None:
            self._interested.add(state)
        result = domish.Element((NS_BLOCKING, "blocklist"))
        for address in sorted(self.lists.get(request.account, ())):
            result.addElement("item")["jid"] = address
        return result

    @iq_handler("set", NS_BLOCKING, "block", Scope.ACCOUNT)
    def block(self, request: IQRequest):
        """Add JIDs to the list (in the user's queue, as subscription processing)."""
        _owner_only(request)
        addresses = _items(request.payload)
        if not addresses:
            raise StanzaError("bad-request", "a block needs at least one item")
        return self.server.sessions.queues.run(request.account, self._block, request, addresses)

    @iq_handler("set", NS_BLOCKING, "unblock", Scope.ACCOUNT)
    def unblock(self, request: IQRequest):
        """Remove JIDs from the list, or all of them for an unblock without items."""
        _owner_only(request)
        addresses = _items(request.payload)
        return self.server.sessions.queues.run(request.account, self._unblock, request, addresses)

    @defer.inlineCallbacks
    def _block(self, request: IQRequest, addresses: list[str]):
        manager = self.server.sessions
        user = request.account
        current = self.lists.get(user, set())
        added = [a for a in addresses if a not in current]
        limit = self.config.max_items
        if len(current) + len(added) > limit:
            raise StanzaError("not-acceptable", f"at most {limit} JIDs can be blocked")
        if added:
            yield self.server.database.run(_insert, user, added)
        newly = set(added)
        pending = yield manager.roster_store.pending(user)
        for contact, _ in pending:
            address = parse_jid(contact)
            if address is not None and is_blocked(newly, address):
                yield manager.roster_store.remove_pending(user, contact)
        roster = yield manager.get_roster(user)
        # From here on nothing waits: the reply, the presence and the change
        # of the list in memory happen together.
        manager.route(result_for(request.stanza))
        for item in list(roster.values()):
            address = parse_jid(item.contact)
            if (item.subscribed_from and address is not None and is_blocked(newly, address)
                    and not is_blocked(current, address)):
                manager.presence.send_unavailable(user, item.contact)
        if added:
            self.lists[user] = current | newly
        self._push(user, "block", addresses)
        return ALREADY_ANSWERED

    @defer.inlineCallbacks
    def _unblock(self, request: IQRequest, addresses: list[str]):
        manager = self.server.sessions
        user = request.account
        current = self.lists.get(user, set())
        removed = set(current) if not addresses else current.intersection(addresses)
        if removed:
            yield self.server.database.run(_delete, user, sorted(removed))
        roster = yield manager.get_roster(user)
        manager.route(result_for(request.stanza))
        remaining = current - removed
        if remaining:
            self.lists[user] = remaining
        else:
            self.lists.pop(user, None)
        for item in list(roster.values()):
            address = parse_jid(item.contact)
            if (item.subscribed_from and address is not None and is_blocked(current, address)
                    and not is_blocked(remaining, address)):
                manager.presence.send_current(user, item.contact)
        self._push(user, "unblock", addresses)
        return ALREADY_ANSWERED

    def _push(self, user: str, action: str, addresses: list[str]) -> None:
        manager = self.server.sessions
        for state in manager.sessions_of(user):
            if state not in self._interested:
                continue
            push = domish.Element((None, "iq"))
            push["type"] = "set"
            push["id"] = manager.next_id("block-push")
            push["to"] = state.full
            element = push.addElement((NS_BLOCKING, action))
            for address in addresses:
                element.addElement("item")["jid"] = address
            manager.deliver(state, push)

    # -- enforcement ---------------------------------------------------------------------

    def _exempt(self, user: str, address: jid.JID) -> bool:
        """The user's own account and the server itself are never blocked."""
        if address.host != self.server.domain:
            return False
        return address.user == user or (address.user is None and address.resource is None)

    def blocks(self, user: str, address: str) -> bool:
        """True if the user blocked the address (for stanzas other modules send for users)."""
        items = self.lists.get(user)
        if items is None:
            return False
        target = parse_jid(address)
        return target is not None and is_blocked(items, target) and not self._exempt(user, target)

    @hook(Point.INBOUND_STANZA, priority=100)
    def inbound(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID) -> bool:
        """Stanzas from a blocked address: bounce messages and iq requests, drop the rest."""
        items = self.lists.get(recipient.user)
        if items is None or not is_blocked(items, sender) or self._exempt(recipient.user, sender):
            return False
        kind = stanza.getAttribute("type")
        name = stanza.name
        if (name == "message" and kind in (None, "normal", "chat")) or (
            name == "iq" and kind in ("get", "set")
        ):
            self.server.sessions.reply_error(stanza, "service-unavailable")
        return True

    @hook(Point.CLIENT_STANZA, priority=100)
    def outbound(self, state, stanza: domish.Element) -> bool:
        """A client's stanza to a blocked address: not-acceptable + <blocked/>."""
        items = self.lists.get(state.username)
        if items is None:
            return False
        to = stanza.getAttribute("to")
        target = parse_jid(to) if to else None
        if target is None or not is_blocked(items, target) or self._exempt(state.username, target):
            return False
        kind = stanza.getAttribute("type")
        if kind == "error" or (stanza.name == "iq" and kind == "result"):
            return True
        blocked = domish.Element((NS_BLOCKING_ERRORS, "blocked"))
        reply = error_reply(stanza, StanzaError(
            "not-acceptable", "you have blocked this address", type="cancel",
            app_condition=blocked))
        if reply is not None:
            self.server.sessions.deliver(state, reply)
        return True

    @hook(Point.ROUTE_PRESENCE, priority=100)
    def route_presence(self, stanza: domish.Element) -> bool:
        """Drop presence the server sends for a user to an address the user blocked."""
        if not self.lists:
            return False
        sender = parse_jid(stanza.getAttribute("from"))
        if sender is None or sender.host != self.server.domain:
            return False
        items = self.lists.get(sender.user)
        if items is None:
            return False
        kind = stanza.getAttribute("type")
        if kind == "error" or kind in SUBSCRIPTION_TYPES:
            return False
        target = parse_jid(stanza.getAttribute("to"))
        return (target is not None and is_blocked(items, target)
                and not self._exempt(sender.user, target))

    @hook(Point.SESSION_BOUND)
    def session_bound(self, state) -> None:
        """Read the user's list again at each bind, in the user's queue.

        The list in memory follows what this server changes; this catches
        what it did not see: an account deleted (and maybe created again)
        with ``xmppdctl`` while the server ran.
        """
        user = state.username
        self.server.sessions.run(user, None, self._reload, user)

    @defer.inlineCallbacks
    def _reload(self, user: str):
        rows = yield self.server.database.query(
            "SELECT jid FROM blocklist WHERE username = ?", user)
        if rows:
            self.lists[user] = {address for (address,) in rows}
        else:
            self.lists.pop(user, None)

    @hook(Point.SESSION_ENDED)
    def session_ended(self, state) -> None:
        """A resource went away: no more pushes for it."""
        self._interested.discard(state)

    @hook(Point.ACCOUNT_DELETED)
    def account_deleted(self, username: str) -> None:
        """The account's rows went with it (cascade); forget its list."""
        self.lists.pop(username, None)


def _owner_only(request: IQRequest) -> None:
    if not request.from_owner:
        raise StanzaError("service-unavailable")


def _items(payload: domish.Element) -> list[str]:
    """The normalised JIDs of a block/unblock's items, in order, once each."""
    found: dict[str, None] = {}
    for child in payload.elements(NS_BLOCKING, "item"):
        address = parse_jid(child.getAttribute("jid") or "")
        if address is None:
            raise StanzaError("jid-malformed", "an item's jid is not a valid JID")
        found[address.full()] = None
    return list(found)


def _insert(cursor: sqlite3.Cursor, username: str, addresses: list[str]) -> None:
    cursor.executemany(
        "INSERT OR IGNORE INTO blocklist (username, jid) "
        "SELECT username, ? FROM accounts WHERE username = ?",
        [(address, username) for address in addresses])


def _delete(cursor: sqlite3.Cursor, username: str, addresses: list[str]) -> None:
    cursor.executemany(
        "DELETE FROM blocklist WHERE username = ? AND jid = ?",
        [(username, address) for address in addresses])
