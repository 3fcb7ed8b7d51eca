"""The presence subscription state machine (RFC 6121 section 3).

Both halves are here: outbound processing on the roster of the user who
sends a subscription stanza, and inbound processing on the roster of the
user it is addressed to. Between two local users the outbound half routes
the stamped stanza (bare JIDs on both ends, 3.1.2) and the inbound half runs
in the contact's serial queue. Every change is stored and pushed to the
user's interested resources.

An inbound ``subscribe`` may carry the requester's nickname (XEP-0172 §4.3,
``<nick xmlns='http://jabber.org/protocol/nick'>``). A contact who is
online gets the request as it came; one who is not gets it at their next
initial presence from ``pending_subscriptions``, where only its 'from',
'to', 'type', 'id' and the nick (text only) are kept: other payloads are
not stored, so a stored request is bounded. A nick over ``[limits]
max_subscription_nick`` bytes is dropped on both paths (the request itself
still goes through: the nick is optional, refusing the subscription for it
would be worse). The pending table already kept the stanza's XML, so this
needed no migration.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.logs import logger
from xmppd.sm.session import Session
from xmppd.sm.stanzas import deserialise, presence, readdress, serialise
from xmppd.storage.roster import RosterItem

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager

log = logger(__name__)

NS_NICK = "http://jabber.org/protocol/nick"
_KEPT_ATTRIBUTES = ("from", "to", "type", "id")


def request_nick(stanza: domish.Element, limit: int) -> domish.Element | None:
    """A fresh, text-only copy of a request's XEP-0172 nick; None if absent or over limit bytes."""
    for child in stanza.elements(NS_NICK, "nick"):
        text = "".join(c for c in child.children if isinstance(c, str))
        if not text or len(text.encode("utf-8")) > limit:
            return None
        nick = domish.Element((NS_NICK, "nick"))
        nick.addContent(text)
        return nick
    return None


def with_bounded_nick(stanza: domish.Element, nick: domish.Element | None) -> domish.Element:
    """The request as delivered at once: its nick (if any) replaced by the checked one."""
    if not any(True for _ in stanza.elements(NS_NICK, "nick")):
        return stanza
    copy = readdress(stanza)
    copy.children = [c for c in copy.children if not (
        isinstance(c, domish.Element) and (c.uri, c.name) == (NS_NICK, "nick"))]
    if nick is not None:
        copy.addChild(nick)
    return copy


def pending_request(stanza: domish.Element, nick: domish.Element | None) -> domish.Element:
    """What is kept of a request for later delivery: its addressing, type, id and nick."""
    kept = domish.Element((None, "presence"))
    for name in _KEPT_ATTRIBUTES:
        value = stanza.getAttribute(name)
        if value is not None:
            kept[name] = value
    if nick is not None:
        kept.addChild(nick)
    return kept


def _copy(item: RosterItem | None, contact: str) -> RosterItem:
    """A copy to modify (the cached item changes only once the database did)."""
    if item is None:
        return RosterItem(contact)
    return dataclasses.replace(item, groups=list(item.groups))


class SubscriptionHandler:
    """subscribe / subscribed / unsubscribe / unsubscribed, both directions."""

    def __init__(self, manager: SessionManager):
        self.manager = manager

    @defer.inlineCallbacks
    def outbound(self, state: Session, stanza: domish.Element, recipient: jid.JID):
        """A subscription stanza sent by one of the user's resources."""
        manager = self.manager
        user = state.username
        owner = state.bare
        contact = recipient.userhost()
        if contact == owner:
            return  # subscriptions to oneself make no sense: ignore them
        kind = stanza.getAttribute("type")
        stamped = readdress(stanza, to=contact, sender=owner)
        roster = yield manager.get_roster(user)
        item = roster.get(contact)
        save = manager.save_roster_item
        if kind == "subscribe":
            if item is None or not (item.subscribed_to or item.ask):
                item = _copy(item, contact)
                item.ask = True
                yield save(user, roster, item)
            manager.route(stamped)
        elif kind == "subscribed":
            if item is not None and item.subscribed_from:
                return
            had_pending = yield manager.roster_store.remove_pending(user, contact)
            item = _copy(item, contact)
            if had_pending:
                item.set_subscription(from_=True)
                item.approved = False
                yield save(user, roster, item)
                manager.route(stamped)
                manager.presence.send_current(user, contact)
            elif not item.approved:
                item.approved = True  # pre-approval (3.4): remembered, not routed
                yield save(user, roster, item)
        elif kind == "unsubscribe":
            if item is not None and (item.subscribed_to or item.ask):
                item = _copy(item, contact)
                item.set_subscription(to=False)
                item.ask = False
                yield save(user, roster, item)
            manager.route(stamped)
        elif kind == "unsubscribed":
            had_pending = yield manager.roster_store.remove_pending(user, contact)
            if item is not None and item.subscribed_from:
                item = _copy(item, contact)
                item.set_subscription(from_=False)
                item.approved = False
                yield save(user, roster, item)
                manager.route(stamped)
                manager.presence.send_unavailable(user, contact)
                return
            if item is not None and item.approved:
                item = _copy(item, contact)
                item.approved = False
                yield save(user, roster, item)
            if had_pending:
                manager.route(stamped)

    @defer.inlineCallbacks
    def inbound(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID):
        """A subscription stanza addressed to a local user."""
        manager = self.manager
        user = recipient.user
        owner = recipient.userhost()
        contact = sender.userhost()
        if contact == owner:
            return
        kind = stanza.getAttribute("type")
        exists = yield manager.user_exists(user)
        if not exists:
            if kind == "subscribe":
                manager.route(presence(owner, contact, "unsubscribed"))
            return
        roster = yield manager.get_roster(user)
        item = roster.get(contact)
        save = manager.save_roster_item
        delivered = readdress(stanza, to=owner, sender=contact)
        if kind == "subscribe":
            if item is not None and item.subscribed_from:
                manager.route(presence(owner, contact, "subscribed"))
                return
            if item is not None and item.approved:
                item = _copy(item, contact)
                item.set_subscription(from_=True)
                item.approved = False
                yield save(user, roster, item)
                manager.route(presence(owner, contact, "subscribed"))
                manager.presence.send_current(user, contact)
                return
            nick = request_nick(delivered, manager.config.limits.max_subscription_nick)
            kept = pending_request(delivered, nick)
            yield manager.roster_store.add_pending(user, contact, serialise(kept))
            self._deliver(user, with_bounded_nick(delivered, nick))
        elif kind == "subscribed":
            if item is None or not item.ask:
                return
            item = _copy(item, contact)
            item.set_subscription(to=True)
            item.ask = False
            yield save(user, roster, item)
            self._deliver(user, delivered)
        elif kind == "unsubscribe":
            had_pending = yield manager.roster_store.remove_pending(user, contact)
            if item is not None and item.subscribed_from:
                item = _copy(item, contact)
                item.set_subscription(from_=False)
                yield save(user, roster, item)
                self._deliver(user, delivered)
                manager.presence.send_unavailable(user, contact)
            elif had_pending:
                self._deliver(user, delivered)
        elif kind == "unsubscribed":
            if item is not None and (item.subscribed_to or item.ask):
                item = _copy(item, contact)
                item.set_subscription(to=False)
                item.ask = False
                yield save(user, roster, item)
                self._deliver(user, delivered)

    def _deliver(self, username: str, stanza: domish.Element) -> None:
        manager = self.manager
        for state in manager.available_of(username):
            manager.deliver(state, stanza)

    @defer.inlineCallbacks
    def redeliver_pending(self, state: Session):
        """Deliver unanswered inbound requests to a resource at initial presence (3.1.3)."""
        rows = yield self.manager.roster_store.pending(state.username)
        for contact, xml in rows:
            stanza = deserialise(xml)
            if stanza is None:
                log.warn("unreadable pending subscription from {contact}", contact=contact)
                continue
            self.manager.deliver(state, stanza)

    @defer.inlineCallbacks
    def cancel_all(self, username: str, owner: str):
        """Before an account is deleted: unsubscribe from and cancel every contact."""
        manager = self.manager
        roster = yield manager.get_roster(username)
        for item in list(roster.values()):
            if item.subscribed_to or item.ask:
                manager.route(presence(owner, item.contact, "unsubscribe"))
            if item.subscribed_from:
                manager.route(presence(owner, item.contact, "unsubscribed"))
        pending = yield manager.roster_store.pending(username)
        for contact, _ in pending:
            manager.route(presence(owner, contact, "unsubscribed"))
