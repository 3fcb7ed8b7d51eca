"""Writing stanzas into a stream, whatever stream they were read from.

A stanza parsed from a client stream carries the ``jabber:client``
namespace, one from a component stream ``jabber:component:accept``, one
built by the server often none at all. In every stream the stanza
namespace is the stream's default namespace, so a stanza is written
without declaring its own: it takes the namespace of the stream it goes
into (RFC 6120 4.8.3, XEP-0114).
"""

from twisted.words.xish import domish

STANZA_NAMESPACES = frozenset(
    {None, "", "jabber:client", "jabber:server", "jabber:component:accept"}
)


def serialize(stanza: domish.Element) -> str:
    """The stanza as XML text in whatever default namespace the stream has."""
    if stanza.uri in STANZA_NAMESPACES:
        # A stanza built by the server has no namespace; the children it
        # copied from a client stanza are in jabber:client: both inherit.
        return stanza.toXml(defaultUri=stanza.uri or "jabber:client")
    return stanza.toXml()


def describe(stanza: domish.Element) -> str:
    """A one-line summary for logs: kind and addresses, never the content.

    Stanza payloads can hold passwords (MUC joins, registration) and private
    messages, so logs name stanzas with this instead of serialising them.
    """
    parts = [stanza.name or "?"]
    for attribute in ("type", "id", "from", "to"):
        value = stanza.getAttribute(attribute)
        if value is not None:
            parts.append(f"{attribute}={value[:200]!r}")
    payload = next((c for c in stanza.elements() if c.uri not in STANZA_NAMESPACES), None)
    if payload is not None:
        parts.append(f"payload={{{payload.uri}}}{payload.name}")
    return "<" + " ".join(parts) + ">"
