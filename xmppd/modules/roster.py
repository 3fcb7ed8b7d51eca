"""Roster management (RFC 6121 section 2): get, set, remove, pushes.

The roster store, its cache and roster pushes belong to the session
manager (presence and subscriptions need them too); this module answers
the ``jabber:iq:roster`` requests of a user's own resources, in the user's
serial queue.

Roster versioning (RFC 6121 2.6) as Prosody does it: the stream feature
``urn:xmpp:features:rosterver`` after authentication, ``ver`` on every
result and push, an empty result to a get whose ``ver`` is the current
version, and the whole roster (never the missed pushes, 2.6.3) to a get
with any other ``ver``. Versions are kept by the store.
"""

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError
from xmppd.module import IQRequest, Module, Scope, iq_handler
from xmppd.sm.stanzas import presence
from xmppd.sm.subscriptions import _copy
from xmppd.storage.roster import NS_ROSTER

MAX_NAME_LENGTH = 1023
MAX_GROUP_LENGTH = 1023
_IGNORED_SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})
#: The stream feature of roster versioning (RFC 6121 2.6.1).
NS_ROSTER_VERSIONING = "urn:xmpp:features:rosterver"


class Roster(Module):
    """Answers jabber:iq:roster requests from the user's own resources."""

    name = "roster"
    features = {Scope.SERVER: [NS_ROSTER]}
    stream_features = [(NS_ROSTER_VERSIONING, "ver")]

    @iq_handler("get", NS_ROSTER, "query", Scope.ACCOUNT)
    def get(self, request: IQRequest) -> defer.Deferred:
        """Return the roster (nothing if the client has the current version).

        The resource becomes interested in pushes either way.
        """
        self._check_owner(request)
        return self.server.sessions.queues.run(request.account, self._get, request)

    @iq_handler("set", NS_ROSTER, "query", Scope.ACCOUNT)
    def set(self, request: IQRequest) -> defer.Deferred:
        """Add, update or remove one item (RFC 6121 2.3, 2.5)."""
        self._check_owner(request)
        return self.server.sessions.queues.run(request.account, self._set, request)

    @staticmethod
    def _check_owner(request: IQRequest) -> None:
        if not request.from_owner:
            raise StanzaError("forbidden")

    @defer.inlineCallbacks
    def _get(self, request: IQRequest):
        manager = self.server.sessions
        roster = yield manager.get_roster(request.account)
        version = yield manager.get_roster_version(request.account)
        state = manager.state_for(request.sender)
        if state is not None:
            state.interested = True
        if request.payload.getAttribute("ver") == str(version):
            return None
        result = domish.Element((NS_ROSTER, "query"))
        result["ver"] = str(version)
        for contact in sorted(roster):
            result.addChild(roster[contact].to_element())
        return result

    @defer.inlineCallbacks
    def _set(self, request: IQRequest):
        manager = self.server.sessions
        sender = request.sender
        contact, name, groups, remove = _parse_set(request.payload, sender)
        user = sender.user
        owner = sender.userhost()
        roster = yield manager.get_roster(user)
        item = roster.get(contact)
        if remove:
            if item is None:
                raise StanzaError("item-not-found")
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


def _parse_set(query: domish.Element, sender: jid.JID):
    """(contact, name, groups, remove) from a roster set; StanzaError if invalid."""
    children = list(query.elements())
    if len(children) != 1 or children[0].name != "item":
        raise StanzaError("bad-request", "a roster set carries exactly one item")
    element = children[0]
    address = element.getAttribute("jid")
    if not address:
        raise StanzaError("bad-request", "the item has no 'jid'")
    contact_jid = parse_jid(address)
    if contact_jid is None:
        raise StanzaError("jid-malformed")
    if contact_jid.resource is not None:
        raise StanzaError("bad-request", "roster items are bare JIDs")
    contact = contact_jid.userhost()
    if contact == sender.userhost():
        raise StanzaError("not-allowed", "you cannot add yourself to your roster")
    subscription = element.getAttribute("subscription")
    if subscription == "remove":
        return contact, None, [], True
    if subscription is not None and subscription not in _IGNORED_SUBSCRIPTIONS:
        raise StanzaError("bad-request", "invalid 'subscription'")
    name = element.getAttribute("name") or None
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise StanzaError("not-acceptable", "the name is too long")
    groups: list[str] = []
    for child in element.elements():
        if child.name != "group":
            continue
        group = str(child)
        if not group.strip():
            raise StanzaError("not-acceptable", "empty group name")
        if len(group) > MAX_GROUP_LENGTH:
            raise StanzaError("not-acceptable", "the group name is too long")
        if group in groups:
            raise StanzaError("bad-request", "duplicate group")
        groups.append(group)
    return contact, name, groups, False
