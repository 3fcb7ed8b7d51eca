"""Presence (RFC 6121 section 4): broadcast, probes, directed presence.

Outbound processing (presence a local resource sends) runs in the sender's
serial queue because it reads the sender's roster; inbound delivery of
available/unavailable presence needs no roster and is synchronous. The last
available presence of each resource is kept in memory to answer probes.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.logs import logger
from xmppd.module import Point
from xmppd.sm.session import Session
from xmppd.sm.stanzas import SUBSCRIPTION_TYPES, presence, readdress
from xmppd.stanza import share_children_xml
from xmppd.storage.roster import RosterItem

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager

log = logger(__name__)


def parse_priority(stanza: domish.Element) -> int | None:
    """The presence priority (default 0), or None if it is not an integer in -128..127."""
    for child in stanza.elements():
        if child.name == "priority":
            try:
                value = int(str(child).strip())
            except ValueError:
                return None
            return value if -128 <= value <= 127 else None
    return 0


def probe_sender(state: Session, recipient: jid.JID) -> str:
    """The 'from' of a probe a client sends: its bare JID, or its full JID for a full JID.

    A probe for an account (a bare JID) speaks for the user, as the probes
    the server sends do (RFC 6121 4.3). A probe for a full JID asks about
    one entity the client deals with itself, such as a MUC occupant
    (XEP-0045 7.2, the client's own occupant JID included): the room knows
    its occupants by their full JIDs and answers the probing resource, so
    the full JID is kept (as Prosody keeps it).
    """
    return state.full if recipient.resource is not None else state.bare


def _bare(address: str) -> str:
    return address.split("/", 1)[0]


@dataclasses.dataclass(frozen=True)
class ProbeHints:
    """What the prober's offline contacts' rosters say of the prober (see ``_probe_hints``)."""

    prober: str
    users: frozenset[str]
    items: dict[str, RosterItem]


class PresenceHandler:
    """Presence processing for the local domain's users."""

    def __init__(self, manager: SessionManager):
        self.manager = manager
        #: While a login's probes are routed: the items read for them in one query.
        self._hints: ProbeHints | None = None

    # -- outbound: presence sent by one of our resources ----------------------------

    def from_session(
        self, state: Session, stanza: domish.Element, recipient: jid.JID | None
    ) -> None:
        """Process presence a bound resource sent (broadcast, directed, subscription)."""
        manager = self.manager
        kind = stanza.getAttribute("type")
        user = state.username
        if recipient is None:
            if kind is None:
                manager.run(user, stanza, self.broadcast_available, state, stanza)
            elif kind == "unavailable":
                manager.run(user, stanza, self.broadcast_unavailable, state, stanza, True)
            elif kind != "error":
                manager.reply_error(stanza, "bad-request", "this presence type needs a 'to'")
            return
        if kind in SUBSCRIPTION_TYPES:
            manager.run(user, stanza, manager.subscriptions.outbound, state, stanza, recipient)
        elif kind is None or kind == "unavailable":
            manager.run(user, stanza, self.directed, state, stanza, recipient)
        elif kind == "probe":
            manager.route(readdress(stanza, sender=probe_sender(state, recipient)))
        elif kind == "error":
            manager.route(stanza)
        else:
            manager.reply_error(stanza, "bad-request", "unknown presence type")

    @defer.inlineCallbacks
    def broadcast_available(self, state: Session, stanza: domish.Element):
        """Initial or updated available presence (RFC 6121 4.2.2, 4.4.2)."""
        manager = self.manager
        priority = parse_priority(stanza)
        if priority is None:
            manager.reply_error(stanza, "bad-request", "priority must be an integer -128..127")
            return
        if not state.bound:
            return
        initial = not state.available
        was_negative = state.priority < 0
        state.available = True
        state.priority = priority
        state.presence = stanza
        roster = yield manager.get_roster(state.username)
        if stanza.children:
            share_children_xml(stanza)  # written once for every contact and probe answer
        for item in list(roster.values()):
            if item.subscribed_from:
                manager.route(readdress(stanza, to=item.contact, sender=state.full))
        for other in manager.available_of(state.username):
            manager.deliver(other, readdress(stanza, to=other.full, sender=state.full))
        if initial:
            for other in manager.available_of(state.username):
                if other is not state and other.presence is not None:
                    manager.deliver(
                        state, readdress(other.presence, to=state.full, sender=other.full)
                    )
            probed = [item.contact for item in list(roster.values()) if item.subscribed_to]
            self._hints = yield self._probe_hints(state.bare, probed)
            try:
                for contact in probed:
                    manager.route(presence(state.bare, contact, "probe"))
            finally:
                self._hints = None
            yield manager.subscriptions.redeliver_pending(state)
        if priority >= 0 and (initial or was_negative):
            yield manager.modules.fire_async(Point.SESSION_AVAILABLE, state)

    @defer.inlineCallbacks
    def broadcast_unavailable(self, state: Session, stanza: domish.Element, echo: bool):
        """Unavailable presence from a resource (RFC 6121 4.5.2), also when it goes away."""
        manager = self.manager
        was_available = state.available
        directed = state.directed
        state.available = False
        state.presence = None
        state.directed = set()
        if not was_available and not directed:
            return
        unavailable = readdress(stanza, sender=state.full)
        covered: set[str] = set()
        if was_available:
            roster = yield manager.get_roster(state.username)
            for item in list(roster.values()):
                if item.subscribed_from:
                    manager.route(readdress(unavailable, to=item.contact))
                    covered.add(item.contact)
            for other in manager.available_of(state.username):
                manager.deliver(other, readdress(unavailable, to=other.full))
            if echo:
                manager.deliver(state, readdress(unavailable, to=state.full))
            yield manager.modules.fire_async(Point.RESOURCE_UNAVAILABLE, state, unavailable)
        for target in sorted(directed):
            if _bare(target) not in covered:
                manager.route(readdress(unavailable, to=target))

    @defer.inlineCallbacks
    def session_ended(self, state: Session):
        """A resource was unbound: unavailable presence on its behalf, cache cleanup."""
        if state.available or state.directed:
            yield self.broadcast_unavailable(
                state, presence(state.full, kind="unavailable"), echo=False
            )
        self.manager.drop_roster_cache(state.username)

    def directed(self, state: Session, stanza: domish.Element, recipient: jid.JID) -> None:
        """Directed presence (RFC 6121 4.6): remember who got it, then route it."""
        target = recipient.full()
        if recipient.userhost() != state.bare:
            if stanza.getAttribute("type") is None:
                state.directed.add(target)
            else:
                state.directed.discard(target)
        self.manager.route(stanza)

    # -- inbound: presence addressed to one of our users ----------------------------

    def inbound(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID | None) -> None:
        """Presence for a local user (or the server) from anybody."""
        if recipient is None or not recipient.user:
            return  # presence for the server itself: nothing to do
        manager = self.manager
        kind = stanza.getAttribute("type")
        user = recipient.user
        if kind is None or kind == "unavailable":
            if manager.queues.busy(user):
                # Keep the order with subscription processing still running for the user.
                manager.run(user, stanza, self.deliver, stanza, recipient)
            else:
                self.deliver(stanza, recipient)
        elif kind in SUBSCRIPTION_TYPES:
            manager.run(user, stanza, manager.subscriptions.inbound, stanza, sender, recipient)
        elif kind == "probe":
            manager.run(user, stanza, self.answer_probe, stanza, sender, recipient)
        elif kind == "error":
            if recipient.resource is not None:
                state = manager.state_for(recipient)
                if state is not None:
                    manager.deliver(state, stanza)
        else:
            manager.reply_error(stanza, "bad-request", "unknown presence type")

    def deliver(self, stanza: domish.Element, recipient: jid.JID) -> None:
        """Available/unavailable presence: to that resource, or every available one."""
        manager = self.manager
        if recipient.resource is not None:
            state = manager.state_for(recipient)
            if state is not None:
                manager.deliver(state, stanza)
        else:
            for state in manager.available_of(recipient.user):
                manager.deliver(state, stanza)

    def answer_probe(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID):
        """Answer a probe on the user's behalf if the prober may see the user's presence.

        At once when the user's roster is in memory (the user is online) or
        its item was read for this login's probes (:meth:`_probe_hints`);
        otherwise after reading the one roster item.
        """
        prober = sender.userhost()
        user = recipient.user
        roster = self.manager.cached_roster(user)
        if roster is not None and prober != recipient.userhost():
            item = roster.get(prober)
        else:
            hints = self._hints
            if hints is None or hints.prober != prober or user not in hints.users:
                return self._answer_probe_loading(sender, recipient)
            item = hints.items.get(user)
            if item is None:  # not on the roster: does the account exist?
                return self._answer_probe_loading(sender, recipient)
        if item is not None and item.subscribed_from:
            self._presence_for_prober(recipient, sender)
        return None

    def _probe_hints(self, prober: str, contacts: list[str]) -> defer.Deferred:
        """Fire with the roster items of the offline local contacts a login probes (or None).

        One query instead of one per probe; :meth:`answer_probe` uses them
        while the probes are routed, synchronously, right after the query.
        A failed query only means each probe reads its item itself.
        """
        manager = self.manager
        suffix = "@" + manager.domain
        offline = [contact[:-len(suffix)] for contact in contacts
                   if contact.endswith(suffix) and "/" not in contact
                   and not manager.is_online(contact[:-len(suffix)])]
        if len(offline) < 2:
            return defer.succeed(None)
        d = manager.roster_store.items_naming(prober, offline)
        d.addCallback(lambda items: ProbeHints(prober, frozenset(offline), items))

        def failed(failure: Any) -> None:
            log.failure("reading the roster items for {prober}'s probes failed", failure,
                        prober=prober)

        return d.addErrback(failed)

    @defer.inlineCallbacks
    def _answer_probe_loading(self, sender: jid.JID, recipient: jid.JID):
        manager = self.manager
        user = recipient.user
        owner = recipient.userhost()
        prober = sender.userhost()
        if prober != owner:
            item = yield manager.get_roster_item(user, prober)
            if item is None or not item.subscribed_from:
                if item is None and not (yield manager.user_exists(user)):
                    manager.route(presence(owner, sender.full(), "unsubscribed"))
                return
        elif not (yield manager.user_exists(user)):
            manager.route(presence(owner, sender.full(), "unsubscribed"))
            return
        self._presence_for_prober(recipient, sender)

    def _presence_for_prober(self, recipient: jid.JID, sender: jid.JID) -> None:
        """The user's current presence (each available resource's, or unavailable) to a prober."""
        manager = self.manager
        available = manager.available_of(recipient.user)
        if not available:
            manager.route(presence(recipient.userhost(), sender.full(), "unavailable"))
            return
        for state in available:
            if state.presence is not None:
                manager.route(readdress(state.presence, to=sender.full(), sender=state.full))

    # -- helpers for subscription processing -------------------------------------

    def send_current(self, username: str, to: str) -> None:
        """Send the last presence of each available resource of a user to an address."""
        manager = self.manager
        for state in manager.available_of(username):
            if state.presence is not None:
                manager.route(readdress(state.presence, to=to, sender=state.full))

    def send_unavailable(self, username: str, to: str) -> None:
        """Send unavailable presence from each available resource of a user to an address."""
        manager = self.manager
        for state in manager.available_of(username):
            manager.route(presence(state.full, to, "unavailable"))
