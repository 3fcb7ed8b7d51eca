"""Resource binding (RFC 6120 section 7) and the legacy session iq (RFC 3921).

Pure helpers: they look at an iq and build replies; the stream decides what
to do with them (the session manager does the actual binding).
"""

from __future__ import annotations

from twisted.words.protocols.jabber import xmlstream, xmpp_stringprep
from twisted.words.xish import domish

from xmppd import errors

NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"

MAX_RESOURCE_BYTES = 1023


def payload(iq: domish.Element) -> domish.Element | None:
    """The first child element of an iq, or None."""
    for child in iq.elements():
        return child
    return None


def is_bind_request(iq: domish.Element) -> bool:
    """True for an iq carrying a bind payload (any type)."""
    child = payload(iq)
    return child is not None and child.uri == NS_BIND and child.name == "bind"


def is_session_request(iq: domish.Element) -> bool:
    """True for an iq carrying the legacy session payload (any type)."""
    child = payload(iq)
    return child is not None and child.uri == NS_SESSION and child.name == "session"


def prepare_resource(resource: str) -> str:
    """resourceprep a client-chosen resource; StanzaError(bad-request) if invalid."""
    try:
        prepared = xmpp_stringprep.resourceprep.prepare(resource)
    except (UnicodeError, ValueError):
        raise errors.StanzaError("bad-request", "invalid resource") from None
    if not prepared or len(prepared.encode("utf-8")) > MAX_RESOURCE_BYTES:
        raise errors.StanzaError("bad-request", "invalid resource")
    return prepared


def requested_resource(iq: domish.Element) -> str | None:
    """The resource a bind request asks for, prepared, or None to generate one.

    Raises StanzaError(bad-request) for a request that is not a proper
    ``<iq type='set'>`` with an id or whose resource is invalid.
    """
    if iq.getAttribute("type") != "set" or not iq.getAttribute("id"):
        raise errors.StanzaError("bad-request", "bind needs an iq of type set with an id")
    bind = payload(iq)
    resource_element = None
    for child in bind.elements():
        if child.uri == NS_BIND and child.name == "resource":
            resource_element = child
            break
    if resource_element is None:
        return None
    text = str(resource_element)
    if not text.strip():
        return None
    return prepare_resource(text)


def bind_result(iq: domish.Element, full_jid: str) -> domish.Element:
    """The result iq announcing the bound full JID."""
    reply = xmlstream.toResponse(iq, "result")
    reply.addElement((NS_BIND, "bind")).addElement("jid", content=full_jid)
    return reply


def error_reply(stanza: domish.Element, condition: str, text: str | None = None) -> domish.Element:
    """A stanza error reply on the client's own stream (see :mod:`xmppd.errors`)."""
    return errors.error_reply(stanza, errors.StanzaError(condition, text))
