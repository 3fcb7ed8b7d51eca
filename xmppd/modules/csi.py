"""Client State Indication (XEP-0352, ``urn:xmpp:csi:0``): quiet while the app sleeps.

A bound client says ``<inactive xmlns='urn:xmpp:csi:0'/>`` when nobody looks
at it (a phone's screen went off) and ``<active/>`` when someone does again;
the stream features offer ``<csi/>`` after authentication. While a session
is inactive the server holds back what can wait and sends it in one burst
later, so the radio wakes up less often:

* **held**: presence updates (available, unavailable), collapsed to the
  latest per sender (a contact who went away and came back is one stanza);
  groupchat messages that do not mention the user's nick in that room;
  headlines (PEP notifications); messages without content (chat states,
  receipts, markers). Each held stanza gets an XEP-0203 ``<delay/>`` (from
  the user's bare JID, when it was held) unless it has one already.
* **important** (sent at once, after everything held, in the original
  order): iqs, chat and normal messages with a body (also when carried in
  a received carbon), sent carbons, subject messages (the end of a MUC
  join), encrypted messages (``urn:xmpp:eme:0``), invitations, calls
  (Jingle Message Initiation), message and presence errors (a failed room
  join), subscription requests and answers, and the user's own presence in
  a room (status 110: a kick or a ban).
* Anything the client sends flushes what is held (the radio is awake
  anyway), as does ``<active/>``, which also ends the inactive state; so
  does reaching ``[csi] max_held`` stanzas.

Mentions: the module learns the user's nick in each room from the client's
own join presence (``<x xmlns='http://jabber.org/protocol/muc'/>`` to
``room/nick``), later presence to ``room/newnick``, and the room's
self-presence (status 110, which has the nick the room assigned); a
groupchat message mentions the user when its body contains that nick as a
word (any case) or the user's bare JID.

The hooks run after every other module's at the delivery points, so a held
stanza has passed the other filters already; a flush writes straight to
the connection. What is held when the connection goes away is lost with it
(it is never a message with a body). An inactive client is not pinged when
it stays silent (``[limits] idle_timeout``): TCP keepalive watches its
socket instead (``[limits] tcp_keepalive``). Costs for active sessions: one dict
lookup per delivered stanza, one per presence the client sends.

A client binding with Bind 2 (XEP-0386) may put ``<inactive/>`` inside its
``<bind/>`` to start inactive.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.module import Inline, Module, Point, hook, inline_handler, nonza_handler
from xmppd.sm.session import Session
from xmppd.sm.stanzas import STANZA_NAMESPACES, with_delay

NS_CSI = "urn:xmpp:csi:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_EME = "urn:xmpp:eme:0"
NS_CONFERENCE = "jabber:x:conference"
NS_JINGLE_MESSAGE = frozenset({"urn:xmpp:jingle-message:0", "urn:xmpp:jingle-message:1"})

SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})


@dataclass
class CSISettings:
    """``[csi]``: Client State Indication (XEP-0352)."""

    max_held: int = setting(
        256, "stanzas held for an inactive client before they are all sent", minimum=1,
        live=True)


def _has_status_110(x: domish.Element) -> bool:
    return any(child.name == "status" and child.getAttribute("code") == "110"
               for child in x.elements())


def presence_is_important(stanza: domish.Element) -> bool:
    """Subscription traffic, errors and the user's own presence in a room."""
    kind = stanza.getAttribute("type")
    if kind in SUBSCRIPTION_TYPES or kind == "error":
        return True
    for child in stanza.elements():
        if child.uri == NS_MUC_USER and child.name == "x" and _has_status_110(child):
            return True
    return False


def message_is_important(stanza: domish.Element, mentioned: Any = None) -> bool:
    """Whether a message must reach an inactive client at once.

    ``mentioned(stanza, body)`` says whether a groupchat body mentions the
    user (None: never).
    """
    kind = stanza.getAttribute("type") or "normal"
    if kind == "error":
        return True
    if kind == "headline":
        return False
    for child in stanza.elements():
        uri, name = child.uri, child.name
        if uri == NS_CARBONS:
            if name == "sent":
                return True
            if name == "received":
                inner = _forwarded(child)
                return inner is not None and message_is_important(inner)
        elif uri in STANZA_NAMESPACES:
            if name == "body":
                if kind != "groupchat":
                    return True
                return mentioned is not None and mentioned(stanza, str(child))
            if name == "subject":
                return True
        elif uri == NS_EME and name == "encryption":
            return True
        elif uri == NS_CONFERENCE and name == "x":
            return True
        elif uri == NS_MUC_USER and name == "x":
            if any(c.name == "invite" for c in child.elements()):
                return True
        elif uri in NS_JINGLE_MESSAGE:
            return True
    return False


def _forwarded(carbon: domish.Element) -> domish.Element | None:
    for forwarded in carbon.elements(NS_FORWARD, "forwarded"):
        for message in forwarded.elements():
            if message.name == "message":
                return message
    return None


def mentions(body: str, nick: str | None, bare: str) -> bool:
    """True if a body names the nick as a word (any case) or contains the bare JID."""
    if bare in body:
        return True
    if not nick:
        return False
    pattern = r"(?<!\w)" + re.escape(nick) + r"(?!\w)"
    return re.search(pattern, body, re.IGNORECASE) is not None


class Held:
    """What an inactive session holds back, in arrival order (presence collapsed)."""

    __slots__ = ("stanzas", "counter")

    def __init__(self) -> None:
        self.stanzas: OrderedDict[Any, domish.Element] = OrderedDict()
        self.counter = 0

    def add(self, stanza: domish.Element) -> None:
        """Hold a stanza; a presence replaces its sender's earlier one (and moves last)."""
        if stanza.name == "presence":
            key: Any = ("presence", stanza.getAttribute("from"))
            self.stanzas.pop(key, None)
        else:
            self.counter += 1
            key = self.counter
        self.stanzas[key] = stanza

    def take(self) -> list[domish.Element]:
        """Everything held, oldest first; the queue is then empty."""
        stanzas = list(self.stanzas.values())
        self.stanzas.clear()
        return stanzas

    def __len__(self) -> int:
        return len(self.stanzas)


class ClientStateIndication(Module):
    """Holds back unimportant traffic for clients that say they are inactive."""

    name = "csi"
    settings = CSISettings
    stream_features = [(NS_CSI, "csi")]

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        #: Inactive sessions -> what they hold.
        self.inactive: dict[Session, Held] = {}
        #: Sessions -> {room bare JID: the user's nick there} (rooms they joined).
        self.nicks: dict[Session, dict[str, str]] = {}

    # -- the client's state ----------------------------------------------------------

    @nonza_handler(NS_CSI, "inactive")
    def went_inactive(self, session: Session, element: domish.Element) -> None:
        """``<inactive/>``: start holding (again)."""
        if session not in self.inactive:
            self.inactive[session] = Held()

    @inline_handler(Inline.BIND2, NS_CSI, "inactive", feature=NS_CSI)
    @inline_handler(Inline.BIND2, NS_CSI, "active")
    def state_inline(self, session: Session, element: domish.Element) -> None:
        """``<inactive/>`` (or ``<active/>``) inside Bind 2 (XEP-0386): the initial state."""
        if element.name == "inactive":
            self.went_inactive(session, element)
        else:
            self.went_active(session, element)

    @nonza_handler(NS_CSI, "active")
    def went_active(self, session: Session, element: domish.Element) -> None:
        """``<active/>``: send what is held and stop holding."""
        held = self.inactive.pop(session, None)
        if held is not None:
            self._write(session, held)

    def is_inactive(self, session: Session) -> bool:
        """True while the session's client said it is inactive."""
        return session in self.inactive

    def flush(self, session: Session) -> None:
        """Send what an inactive session holds (it stays inactive)."""
        held = self.inactive.get(session)
        if held:
            self._write(session, held)

    def _write(self, session: Session, held: Held) -> None:
        for stanza in held.take():
            session.write(stanza)

    @hook(Point.SESSION_IDLE)
    def idle(self, session: Session) -> bool:
        """An inactive client is not pinged: waking its radio is what it asked us not to do."""
        return session in self.inactive

    @hook(Point.SESSION_ENDED)
    def session_ended(self, session: Session) -> None:
        """Forget the session's state."""
        self.inactive.pop(session, None)
        self.nicks.pop(session, None)

    # -- what the client sends ---------------------------------------------------------

    @hook(Point.CLIENT_STANZA, priority=100)
    def client_stanza(self, session: Session, stanza: domish.Element) -> None:
        """Client activity flushes; presence to rooms teaches the user's nicks."""
        if self.inactive and session in self.inactive:
            self.flush(session)
        if stanza.name == "presence":
            self._learn_nick(session, stanza)

    def _learn_nick(self, session: Session, stanza: domish.Element) -> None:
        to = stanza.getAttribute("to")
        if not to or "/" not in to:
            return
        room, nick = to.split("/", 1)
        rooms = self.nicks.get(session)
        if stanza.getAttribute("type") == "unavailable":
            if rooms is not None:
                rooms.pop(room, None)
            return
        joining = any(child.uri == NS_MUC and child.name == "x" for child in stanza.elements())
        if joining:
            self.nicks.setdefault(session, {})[room] = nick
        elif rooms is not None and room in rooms:
            rooms[room] = nick  # a nick change

    # -- what is delivered -----------------------------------------------------------

    @hook(Point.DELIVER_PRESENCE, priority=-100)
    def presence(self, session: Session, stanza: domish.Element) -> bool | None:
        """Hold (and collapse) presence updates for inactive sessions."""
        held = self.inactive.get(session) if self.inactive else None
        if held is None:
            return None
        if presence_is_important(stanza):
            self._self_presence(session, stanza)
            self.flush(session)
            return None
        return self._hold(session, held, stanza)

    def _self_presence(self, session: Session, stanza: domish.Element) -> None:
        sender = stanza.getAttribute("from") or ""
        if "/" not in sender or stanza.getAttribute("type") is not None:
            return
        room, nick = sender.split("/", 1)
        self.nicks.setdefault(session, {})[room] = nick

    @hook(Point.DELIVER_MESSAGE, priority=-100)
    def message(self, session: Session, stanza: domish.Element) -> bool | None:
        """Hold unimportant messages for inactive sessions; flush before important ones."""
        held = self.inactive.get(session) if self.inactive else None
        if held is None:
            return None
        if message_is_important(stanza, lambda s, body: self.mentioned(session, s, body)):
            self.flush(session)
            return None
        return self._hold(session, held, stanza)

    @hook(Point.DELIVER_IQ, priority=-100)
    def iq(self, session: Session, stanza: domish.Element) -> None:
        """Iqs are always important: what is held goes first."""
        if self.inactive and session in self.inactive:
            self.flush(session)

    def mentioned(self, session: Session, stanza: domish.Element, body: str) -> bool:
        """Whether a groupchat body mentions the session's user (its nick in that room, its JID)."""
        room = (stanza.getAttribute("from") or "").split("/", 1)[0]
        nick = self.nicks.get(session, {}).get(room)
        return mentions(body, nick, session.bare)

    def _hold(self, session: Session, held: Held, stanza: domish.Element) -> bool | None:
        held.add(with_delay(stanza, session.bare, self.server.reactor.seconds()))
        if len(held) >= self.config.max_held:
            self.flush(session)
        return True
