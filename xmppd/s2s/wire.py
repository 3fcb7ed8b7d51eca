"""What goes on an S2S stream's wire: namespaces, stanza text, dialback elements.

Stanzas travel inside the server in ``jabber:client`` (as client stanzas do)
and between servers in ``jabber:server``: :func:`stanza_xml` writes one for
the wire, :func:`as_client_stanza` moves a received one back.
"""

from __future__ import annotations

from twisted.words.xish import domish

from xmppd.stanza import escape_attribute

NS_SERVER = "jabber:server"
NS_CLIENT = "jabber:client"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STANZA_NAMES = ("message", "presence", "iq")
#: Namespaces a stanza may carry inside the server that are written as jabber:server.
LOCAL_STANZA_NAMESPACES = (NS_CLIENT, "jabber:component:accept", NS_SERVER, None)


def stanza_xml(element: domish.Element) -> str:
    """A stanza as text for an S2S stream: local stanza namespaces become jabber:server."""
    out: list[str] = []
    _write(element, NS_SERVER, out)
    return "".join(out)


def _write(element: domish.Element, inherited: str, out: list[str]) -> None:
    uri = element.uri
    if uri in LOCAL_STANZA_NAMESPACES:
        uri = NS_SERVER
    out.append("<" + element.name)
    if uri != inherited:
        out.append(" xmlns='" + escape_attribute(uri) + "'")
    prefixes = 0
    for key, value in element.attributes.items():
        if isinstance(key, tuple):
            namespace, local = key
            if namespace == "http://www.w3.org/XML/1998/namespace":
                key = "xml:" + local
            else:
                out.append(f" xmlns:a{prefixes}='" + escape_attribute(namespace) + "'")
                key = f"a{prefixes}:{local}"
                prefixes += 1
        out.append(" " + key + "='" + escape_attribute(value) + "'")
    if not element.children:
        out.append("/>")
        return
    out.append(">")
    for child in element.children:
        if isinstance(child, domish.SerializedXML):
            out.append(child)  # already text in its own namespaces
        elif isinstance(child, str):
            out.append(escape_attribute(child))
        else:
            _write(child, uri, out)
    out.append("</" + element.name + ">")


def as_client_stanza(element: domish.Element) -> None:
    """Move a received stanza from jabber:server to jabber:client, in place (tree-wide)."""
    if element.uri == NS_SERVER:
        element.uri = NS_CLIENT
    if element.defaultUri == NS_SERVER:
        element.defaultUri = NS_CLIENT
    for child in element.children:
        if isinstance(child, domish.Element):
            as_client_stanza(child)


def dialback_xml(name: str, attributes: dict[str, str], text: str = "") -> str:
    """A ``db:result``/``db:verify`` element as text (the header declares ``db``)."""
    attrs = "".join(f" {k}='{escape_attribute(v)}'" for k, v in attributes.items() if v)
    if text:
        return f"<db:{name}{attrs}>{escape_attribute(text)}</db:{name}>"
    return f"<db:{name}{attrs}/>"
