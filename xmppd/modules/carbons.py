"""Message Carbons (XEP-0280, ``urn:xmpp:carbons:2``): every session sees the whole chat.

* A session turns carbons on with ``<iq type='set'><enable
  xmlns='urn:xmpp:carbons:2'/></iq>`` (no 'to', or its own bare JID) and
  off with ``<disable/>``; the state is the session's own (kept here per
  user and resource, forgotten when the session ends). Anyone else's
  request gets ``service-unavailable`` (as Prosody's mod_carbons, which
  only answers the account's own sessions).
* **sent**: an eligible message a session sends (seen at
  ``Point.CLIENT_STANZA``, before it is routed, wherever it goes) is
  wrapped as ``<sent><forwarded><message .../></forwarded></sent>`` in a
  message from the user's bare JID to each *other* carbons-enabled session.
* **received**: an eligible message for the user (seen at
  ``Point.LOCAL_MESSAGE`` with the sessions RFC 6121's rules picked) is
  wrapped as ``<received>`` for each carbons-enabled session that does not
  get the message itself (to a full JID: all others; to the bare JID: all
  but the highest-priority resources that get it). Like Prosody, this also
  happens when no session takes the message (it goes to offline storage).
* Copies are sent before the message itself is delivered; the forwarded
  message is the message as delivered (a client's message without 'to'
  shows its bare JID).

Eligibility (XEP-0280 §6, with Prosody 0.12's ``should_copy`` where the
XEP leaves a choice): never a message with ``<private
xmlns='urn:xmpp:carbons:2'/>`` or ``<no-copy xmlns='urn:xmpp:hints'/>``,
nor one that is itself a carbon (``<sent/>``/``<received/>``: forged
carbons from outside are not passed on); never a MUC private message (one
with ``<x xmlns='http://jabber.org/protocol/muc#user'/>`` that is not
addressed to the user's bare JID, so mediated invitations are copied);
otherwise type ``chat``, type ``normal`` with a ``<body/>``, an error from
a bare JID (the bounce of a message sent to a bare JID), or a Jingle
Message Initiation call (``urn:xmpp:jingle-message:0``/``:1``). Never
``groupchat`` nor ``headline``. Like Prosody, a message the user's
archive stamped (a ``<stanza-id/>`` by the user's bare JID, see the
``mam`` module, which runs before this one) is copied too; the copies
carry that stanza-id (a sent carbon's only: the message routed to its
recipient does not).

A client binding with Bind 2 (XEP-0386) may put ``<enable/>`` inside its
``<bind/>``: carbons are on for the new session at once (nothing goes into
``<bound/>``).

The ``<private/>`` element is removed from a message delivered to a user
who has carbons on (XEP-0280 §7). For users without any carbons-enabled
session everything here costs one dict lookup per message (the hot path),
and such messages keep the element.
"""

from __future__ import annotations

from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.module import Inline, IQRequest, Module, Point, Scope, hook, inline_handler, iq_handler
from xmppd.sm.session import Session
from xmppd.sm.stanzas import NS_CLIENT, STANZA_NAMESPACES, readdress

NS_CARBONS = "urn:xmpp:carbons:2"
NS_CARBONS_RULES = "urn:xmpp:carbons:rules:0"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_SID = "urn:xmpp:sid:0"
NS_JINGLE_MESSAGE = frozenset({"urn:xmpp:jingle-message:0", "urn:xmpp:jingle-message:1"})



def eligible(stanza: domish.Element, user_bare: str) -> tuple[bool, bool]:
    """(copy it?, has a ``<private/>``) for a message of a user's (XEP-0280 §6).

    ``user_bare`` is the bare JID of the user whose sessions would get the
    copies (the sender's for sent, the addressee's for received carbons).
    """
    kind = stanza.getAttribute("type") or "normal"
    if kind == "groupchat" or kind == "headline":
        return False, False
    body = muc_user = call = archived = False
    for child in stanza.elements():
        uri = child.uri
        if uri == NS_CARBONS:
            return False, child.name == "private"
        if uri == NS_HINTS and child.name == "no-copy":
            return False, False
        if uri == NS_MUC_USER and child.name == "x":
            muc_user = True
        elif child.name == "body" and uri in STANZA_NAMESPACES:
            body = True
        elif uri in NS_JINGLE_MESSAGE:
            call = True
        elif uri == NS_SID and child.name == "stanza-id" and child.getAttribute("by") == user_bare:
            archived = True
    if muc_user and stanza.getAttribute("to") != user_bare:
        return False, False  # a MUC private message (XEP-0280 §6.1)
    if kind == "chat" or (kind == "normal" and body) or call or archived:
        return True, False
    if kind == "error":
        sender = stanza.getAttribute("from") or ""
        return "/" not in sender, False  # a bounce of a message to a bare JID
    return False, False


def client_copy(element: domish.Element) -> domish.Element:
    """A copy of a stanza (and its stanza-namespace children) in ``jabber:client``.

    Inside ``<forwarded/>`` the message must declare ``jabber:client``; a
    stanza from a component or built by the server has its own (or no)
    namespace. Payloads in other namespaces are shared, not copied.
    """
    copy = domish.Element((NS_CLIENT, element.name), NS_CLIENT, dict(element.attributes))
    children = []
    for child in element.children:
        if isinstance(child, domish.Element) and child.uri in STANZA_NAMESPACES:
            child = client_copy(child)
        children.append(child)
    copy.children = children
    return copy


def without_private(stanza: domish.Element) -> None:
    """Remove ``<private xmlns='urn:xmpp:carbons:2'/>`` (a new children list)."""
    stanza.children = [
        c for c in stanza.children
        if not (isinstance(c, domish.Element) and c.uri == NS_CARBONS and c.name == "private")
    ]


class Carbons(Module):
    """XEP-0280 enable/disable per session and the sent/received copies."""

    name = "carbons"
    features = {Scope.SERVER: [NS_CARBONS, NS_CARBONS_RULES]}

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        #: username -> resource -> the carbons-enabled Session.
        self.enabled: dict[str, dict[str, Session]] = {}

    # -- enable / disable ------------------------------------------------------

    def _session_of(self, request: IQRequest) -> Session:
        if not request.from_owner or (
            request.recipient is not None and request.recipient.resource is not None
        ):
            raise StanzaError("service-unavailable")
        state = self.server.sessions.state_for(request.sender)
        if state is None:
            raise StanzaError("service-unavailable")
        return state

    @iq_handler("set", NS_CARBONS, "enable", Scope.ACCOUNT)
    def enable(self, request: IQRequest) -> None:
        """Carbons on for the requesting session."""
        state = self._session_of(request)
        self.enabled.setdefault(state.username, {})[state.resource] = state

    @inline_handler(Inline.BIND2, NS_CARBONS, "enable", feature=NS_CARBONS)
    def enable_inline(self, session: Session, element: domish.Element) -> None:
        """``<enable/>`` inside Bind 2 (XEP-0386): carbons on for the new session."""
        self.enabled.setdefault(session.username, {})[session.resource] = session

    @iq_handler("set", NS_CARBONS, "disable", Scope.ACCOUNT)
    def disable(self, request: IQRequest) -> None:
        """Carbons off for the requesting session."""
        self._drop(self._session_of(request))

    def is_enabled(self, state: Session) -> bool:
        """True if that session has carbons on."""
        return self.enabled.get(state.username, {}).get(state.resource) is state

    def _drop(self, state: Session) -> None:
        sessions = self.enabled.get(state.username)
        if sessions is not None and sessions.get(state.resource) is state:
            del sessions[state.resource]
            if not sessions:
                del self.enabled[state.username]

    @hook(Point.SESSION_ENDED)
    def session_ended(self, state: Session) -> None:
        """A session that ends takes its carbons state with it."""
        self._drop(state)

    @hook(Point.ACCOUNT_DELETED)
    def account_deleted(self, username: str) -> None:
        """Nothing of a deleted account is kept."""
        self.enabled.pop(username, None)

    # -- copies ------------------------------------------------------------------

    def copies_sent(self, session: Session) -> bool:
        """Whether what ``session`` sends is copied to another session (its carbons are on)."""
        sessions = self.enabled.get(session.username)
        return bool(sessions) and any(
            s is not session and s.bound for s in sessions.values())

    @hook(Point.CLIENT_STANZA)
    def sent(self, session: Session, stanza: domish.Element) -> None:
        """``sent`` copies of an eligible message a session sends."""
        if stanza.name != "message":
            return
        sessions = self.enabled.get(session.username)
        if not sessions:
            return
        others = [s for s in sessions.values() if s is not session and s.bound]
        if not others or not eligible(stanza, session.bare)[0]:
            return
        forwarded = client_copy(stanza)
        if forwarded.getAttribute("to") is None:
            forwarded["to"] = session.bare
        self._send_copies("sent", session.bare, forwarded, others)

    @hook(Point.LOCAL_MESSAGE)
    def received(self, username: str, targets: list[Session], stanza: domish.Element) -> None:
        """``received`` copies for the enabled sessions that do not get the message."""
        sessions = self.enabled.get(username)
        if not sessions:
            return
        bare = next(iter(sessions.values())).bare
        copy, private = eligible(stanza, bare)
        if private:
            without_private(stanza)
        if not copy:
            return
        others = [s for s in sessions.values() if s.bound and s not in targets]
        if others:
            self._send_copies("received", bare, client_copy(stanza), others)

    def _send_copies(self, kind: str, bare: str, message: domish.Element,
                     sessions: list[Session]) -> None:
        carbon = domish.Element((None, "message"))
        carbon["from"] = bare
        message_type = message.getAttribute("type")
        if message_type is not None:
            carbon["type"] = message_type
        carbon.addElement((NS_CARBONS, kind)).addElement(
            (NS_FORWARD, "forwarded")).addChild(message)
        deliver = self.server.sessions.deliver
        for state in sessions:
            deliver(state, readdress(carbon, to=state.full))
