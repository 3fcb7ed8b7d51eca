"""Roster management (RFC 6121 section 2): get, set, remove, pushes.

Runs in the user's serial queue. Roster versioning is not offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.sm.stanzas import presence, result_for
from xmppd.sm.subscriptions import _copy
from xmppd.storage.roster import NS_ROSTER

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager

MAX_NAME_LENGTH = 1023
MAX_GROUP_LENGTH = 1023
_IGNORED_SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})


class RosterRequestError(Exception):
    """A roster set that must be answered with a stanza error."""

    def __init__(self, condition: str, text: str | None = None):
        super().__init__(condition)
        self.condition = condition
        self.text = text


class RosterHandler:
    """Answers jabber:iq:roster requests from the user's own resources."""

    def __init__(self, manager: SessionManager):
        self.manager = manager

    def handle(self, stanza: domish.Element, sender: jid.JID, query: domish.Element) -> None:
        """A roster get or set from one of the user's resources (already checked)."""
        function = self.get if stanza.getAttribute("type") == "get" else self.set
        self.manager.run(sender.user, stanza, function, stanza, sender, query)

    @defer.inlineCallbacks
    def get(self, stanza: domish.Element, sender: jid.JID, query: domish.Element):
        """Return the whole roster; the resource becomes interested in pushes."""
        manager = self.manager
        roster = yield manager.get_roster(sender.user)
        state = manager.state_for(sender)
        if state is not None:
            state.interested = True
        reply = result_for(stanza)
        result = reply.addElement((NS_ROSTER, "query"))
        for contact in sorted(roster):
            result.addChild(roster[contact].to_element())
        manager.route(reply)

    @defer.inlineCallbacks
    def set(self, stanza: domish.Element, sender: jid.JID, query: domish.Element):
        """Add, update or remove one item (RFC 6121 2.3, 2.5)."""
        manager = self.manager
        try:
            contact, name, groups, remove = self._parse_set(query, sender)
        except RosterRequestError as e:
            manager.reply_error(stanza, e.condition, e.text)
            return
        user = sender.user
        owner = sender.userhost()
        roster = yield manager.get_roster(user)
        item = roster.get(contact)
        if remove:
            if item is None:
                manager.reply_error(stanza, "item-not-found")
                return
            if item.subscribed_to or item.ask:
                manager.route(presence(owner, contact, "unsubscribe"))
            had_pending = yield manager.roster_store.remove_pending(user, contact)
            if item.subscribed_from or had_pending:
                manager.route(presence(owner, contact, "unsubscribed"))
            if item.subscribed_from:
                manager.presence.send_unavailable(user, contact)
            yield manager.remove_roster_item(user, roster, contact)
        else:
            item = _copy(item, contact)
            item.name = name
            item.groups = groups
            yield manager.save_roster_item(user, roster, item)
        manager.route(result_for(stanza))

    def _parse_set(self, query: domish.Element, sender: jid.JID):
        children = list(query.elements())
        if len(children) != 1 or children[0].name != "item":
            raise RosterRequestError("bad-request", "a roster set carries exactly one item")
        element = children[0]
        address = element.getAttribute("jid")
        if not address:
            raise RosterRequestError("bad-request", "the item has no 'jid'")
        contact_jid = parse_jid(address)
        if contact_jid is None:
            raise RosterRequestError("jid-malformed")
        if contact_jid.resource is not None:
            raise RosterRequestError("bad-request", "roster items are bare JIDs")
        contact = contact_jid.userhost()
        if contact == sender.userhost():
            raise RosterRequestError("not-allowed", "you cannot add yourself to your roster")
        subscription = element.getAttribute("subscription")
        if subscription == "remove":
            return contact, None, [], True
        if subscription is not None and subscription not in _IGNORED_SUBSCRIPTIONS:
            raise RosterRequestError("bad-request", "invalid 'subscription'")
        name = element.getAttribute("name") or None
        if name is not None and len(name) > MAX_NAME_LENGTH:
            raise RosterRequestError("not-acceptable", "the name is too long")
        groups: list[str] = []
        for child in element.elements():
            if child.name != "group":
                continue
            group = str(child)
            if not group.strip():
                raise RosterRequestError("not-acceptable", "empty group name")
            if len(group) > MAX_GROUP_LENGTH:
                raise RosterRequestError("not-acceptable", "the group name is too long")
            if group in groups:
                raise RosterRequestError("bad-request", "duplicate group")
            groups.append(group)
        return contact, name, groups, False
