"""BOSH ``<body/>`` wrappers (XEP-0124): parsing requests, writing responses.

:func:`parse_body` reads one request: the ``<body/>`` (its attributes) and
the elements inside, each checked with the c2s stream's restricted parser
and its ``[limits]`` (size, depth, attributes, elements). Elements that
inherit the body's namespace are taken as ``jabber:client`` (as Prosody
does: many clients leave ``xmlns`` out). Anything else — bad XML, another
root, text beside the elements — raises :class:`BadRequest`.

:func:`render_body` writes one response: our attributes, then the already
serialised elements (each declaring its namespaces, see
:func:`xmppd.ws.stream.serialize`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.words.xish import domish

from xmppd.c2s.stream import NS_CLIENT
from xmppd.c2s.xmlparser import RestrictedElementStream, StreamParseError

NS_HTTPBIND = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
NS_XML = "http://www.w3.org/XML/1998/namespace"

#: The highest XEP-0124 version we implement.
VERSION = (1, 11)


class BadRequest(Exception):
    """The request is not a BOSH ``<body/>`` (HTTP 400)."""


@dataclass
class Body:
    """One request's ``<body/>``: its attributes and the elements inside."""

    attributes: dict[Any, str]
    children: list[domish.Element] = field(default_factory=list)

    def get(self, name: Any) -> str | None:
        """An attribute (a ``(namespace, name)`` tuple for a qualified one), or None."""
        return self.attributes.get(name)

    def number(self, name: str) -> int | None:
        """An attribute as a non-negative integer; None when missing or not one."""
        value = self.attributes.get(name)
        if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
            return None
        return int(value)

    @property
    def is_restart(self) -> bool:
        """``xmpp:restart='true'`` (XEP-0206): restart the stream after SASL."""
        return self.get((NS_XBOSH, "restart")) in ("true", "1")


def _as_client(element: domish.Element) -> None:
    """Elements in the body's namespace become jabber:client (the whole subtree)."""
    stack = [element]
    while stack:
        node = stack.pop()
        if node.uri == NS_HTTPBIND:
            node.uri = NS_CLIENT
        if node.defaultUri == NS_HTTPBIND:
            node.defaultUri = NS_CLIENT
        stack.extend(c for c in node.children if isinstance(c, domish.Element))


class _BodyParser(RestrictedElementStream):
    """The restricted parser for one body: text beside the elements is an error."""

    def _on_cdata(self, data: str) -> None:
        if self.depth == 1 and data.strip():
            raise StreamParseError("not-well-formed", "text beside the body's elements")
        super()._on_cdata(data)


def parse_body(data: bytes, limits: Any) -> Body:
    """The ``<body/>`` of a request (BadRequest when it is not one)."""
    parser = _BodyParser(
        max_stanza_size=limits.max_stanza_size,
        max_depth=limits.max_depth,
        max_attributes=limits.max_attributes,
        max_elements=limits.max_elements,
    )
    roots: list[domish.Element] = []
    children: list[domish.Element] = []
    parser.DocumentStartEvent = roots.append
    parser.ElementEvent = children.append
    parser.DocumentEndEvent = lambda: None
    try:
        parser.parse(data)
    except StreamParseError as e:
        raise BadRequest(e.text or e.condition) from None
    if not parser.ended:
        raise BadRequest("not one whole <body/> element")
    root = roots[0]
    if (root.uri, root.name) != (NS_HTTPBIND, "body"):
        raise BadRequest(f"the root must be <body xmlns='{NS_HTTPBIND}'/>")
    for child in children:
        _as_client(child)
    return Body(dict(root.attributes), children)


def render_body(attributes: list[tuple[str, str]], payload: list[bytes] = ()) -> bytes:
    """A response ``<body/>`` with these attributes around the serialised elements.

    Attribute names may carry the ``xmpp:`` or ``stream:`` prefix; their
    namespaces are declared when used.
    """
    names = [name for name, _ in attributes]
    head = [f"xmlns='{NS_HTTPBIND}'"]
    if any(name.startswith("xmpp:") for name in names):
        head.append(f"xmlns:xmpp='{NS_XBOSH}'")
    head += [f"{name}='{domish.escapeToXml(value, 1)}'" for name, value in attributes]
    opening = ("<body " + " ".join(head)).encode()
    if not payload:
        return opening + b"/>"
    return opening + b">" + b"".join(payload) + b"</body>"


def version_text(requested: str | None) -> str:
    """The ``ver`` to answer: ours, or the client's when that is lower."""
    if requested:
        parts = requested.split(".")
        if len(parts) == 2 and all(p.isascii() and p.isdigit() and len(p) < 6 for p in parts):
            theirs = (int(parts[0]), int(parts[1]))
            if theirs < VERSION:
                return f"{theirs[0]}.{theirs[1]}"
    return f"{VERSION[0]}.{VERSION[1]}"
