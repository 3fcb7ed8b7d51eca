"""Small stanza helpers shared by the session manager's parts.

Stanzas are ``domish.Element`` objects that may be shared between several
recipients, so nothing here mutates its input: :func:`readdress` makes a
shallow copy (new attributes, same children) in O(number of children).
"""

from __future__ import annotations

from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from wokkel.generic import parseXml

from xmppd.datetimes import format_stamp
from xmppd.stanza import remembered_xml, shallow_copy, xml_text

NS_CLIENT = "jabber:client"
NS_DELAY = "urn:xmpp:delay"

#: The namespaces a stanza's own children (body, subject, thread) may be in,
#: depending on the stream it came from or who built it.
STANZA_NAMESPACES = frozenset({None, "", NS_CLIENT, "jabber:server", "jabber:component:accept"})
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})


def readdress(
    stanza: domish.Element, to: str | None = None, sender: str | None = None
) -> domish.Element:
    """A shallow copy of a stanza, optionally with a new 'to' and/or 'from'.

    Children serialised once for all copies (:func:`xmppd.stanza.share_children_xml`)
    stay shared with the copy.
    """
    copy = shallow_copy(stanza)
    if to is not None:
        copy.attributes["to"] = to
    if sender is not None:
        copy.attributes["from"] = sender
    return copy


def presence(
    sender: str, to: str | None = None, kind: str | None = None, stanza_id: str | None = None
) -> domish.Element:
    """A new empty presence stanza."""
    element = domish.Element((None, "presence"))
    element["from"] = sender
    if to is not None:
        element["to"] = to
    if kind is not None:
        element["type"] = kind
    if stanza_id is not None:
        element["id"] = stanza_id
    return element


def result_for(iq: domish.Element) -> domish.Element:
    """The empty result to an iq get/set."""
    return xmlstream.toResponse(iq, "result")


def serialise(stanza: domish.Element) -> str:
    """XML for storage; the root is put in the ``jabber:client`` namespace."""
    xml = remembered_xml(stanza)
    return xml if xml is not None else xml_text(stanza, NS_CLIENT)


def deserialise(xml: str) -> domish.Element | None:
    """The stanza back from :func:`serialise`; None if the XML is unusable."""
    try:
        return parseXml(xml.encode("utf-8"))
    except Exception:  # noqa: BLE001 - a corrupt row must not stop delivery
        return None


def with_delay(stanza: domish.Element, by: str, stamp: float) -> domish.Element:
    """A shallow copy with an XEP-0203 ``<delay/>``, or the stanza itself if it has one."""
    if any(child.uri == NS_DELAY for child in stanza.elements()):
        return stanza
    return add_delay(stanza, by, stamp)


def add_delay(stanza: domish.Element, by: str, stamp: float) -> domish.Element:
    """A shallow copy of ``stanza`` with an XEP-0203 ``<delay/>`` added (from ``by``)."""
    copy = domish.Element((stanza.uri, stanza.name), stanza.defaultUri, dict(stanza.attributes))
    copy.children = list(stanza.children)
    delay = domish.Element((NS_DELAY, "delay"))
    delay["from"] = by
    delay["stamp"] = format_stamp(stamp)
    copy.children.append(delay)
    return copy


def child_elements(element: domish.Element) -> list[domish.Element]:
    """The element children of an element (text nodes skipped)."""
    return [c for c in element.children if isinstance(c, domish.Element)]
