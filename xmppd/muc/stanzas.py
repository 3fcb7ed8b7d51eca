"""Stanza helpers shared by the room core and the MUC feature modules.

Namespaces, child lookup, the shallow copies broadcasts are made of, the
presence a room keeps of an occupant, nick preparation and JID parsing
(both raising :class:`~xmppd.errors.StanzaError`).
"""

from __future__ import annotations

import uuid

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import JID_ERRORS, relaxed_resourcepart
from xmppd.errors import StanzaError

NS_CLIENT = "jabber:client"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_MUC_ADMIN = NS_MUC + "#admin"
NS_MUC_OWNER = NS_MUC + "#owner"
NS_MUC_REQUEST = NS_MUC + "#request"
NS_MUC_ROOMINFO = NS_MUC + "#roominfo"
NS_MUC_REGISTER = NS_MUC + "#register"
NS_CONFERENCE = "jabber:x:conference"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_REGISTER = "jabber:iq:register"
NS_X_DATA = "jabber:x:data"
NS_PING = "urn:xmpp:ping"
NS_STANZAS_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"

_STANZA_NAMESPACES = (None, "", NS_CLIENT)


def child(element: domish.Element, name: str, uri: str | None = None) -> domish.Element | None:
    """The first child element called ``name`` (in ``uri``, or in the stanza namespace)."""
    for candidate in element.elements():
        if candidate.name != name:
            continue
        if uri is None:
            if candidate.uri in _STANZA_NAMESPACES or candidate.uri == element.uri:
                return candidate
        elif candidate.uri == uri:
            return candidate
    return None


def stored_presence(stanza: domish.Element | None) -> domish.Element:
    """The parts of a client's presence the room relays (no MUC payloads)."""
    presence = domish.Element((None, "presence"))
    if stanza is not None:
        for element in stanza.elements():
            if element.uri not in (NS_MUC, NS_MUC_USER):
                presence.children.append(element)
    return presence


def bounce_presence(stanza: domish.Element) -> domish.Element:
    """An unavailable presence whose status tells which error removed the occupant."""
    condition, text = "undefined-condition", None
    error = child(stanza, "error")
    if error is not None:
        for element in error.elements():
            if element.uri == NS_STANZAS_ERRORS:
                if element.name == "text":
                    text = str(element)
                else:
                    condition = element.name
    presence = domish.Element((None, "presence"))
    reason = f"Kicked: {condition.replace('-', ' ')}" + (f": {text}" if text else "")
    presence.addElement("status", content=reason)
    return presence


def new_id() -> str:
    """A fresh stanza id for what the room sends on its own."""
    return uuid.uuid4().hex[:16]


#: The text of the refusal of a nick only newer Unicode allows.
NEWER_UNICODE_NICK = (
    "nicknames with characters newer than Unicode 3.2 (such as emoji) are not supported"
)


def resourceprep_nick(nick: str) -> str:
    """The nick normalised by resourceprep; StanzaError jid-malformed if it fails.

    A nick RFC 7622 allows but resourceprep (Unicode 3.2) does not reaches
    the room (:func:`xmppd.addresses.relaxed_jid`) and is refused here, with
    a text that says why.
    """
    try:
        prepared = jid.resourceprep.prepare(nick)
    except UnicodeError:
        text = NEWER_UNICODE_NICK if relaxed_resourcepart(nick) else "invalid nickname"
        raise StanzaError("jid-malformed", text) from None
    if not prepared.strip() or len(prepared.encode("utf-8")) > 1023:
        raise StanzaError("jid-malformed", "invalid nickname")
    return prepared


def parse_jid(value: str | None) -> jid.JID:
    """A JID from an attribute value: bad-request if missing, jid-malformed if invalid."""
    if not value:
        raise StanzaError("bad-request", "a JID is required")
    try:
        return jid.JID(value)
    except JID_ERRORS:
        raise StanzaError("jid-malformed") from None
