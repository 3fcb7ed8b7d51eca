"""A restricted, bounded XML element stream for XMPP (RFC 6120 section 11).

:class:`RestrictedElementStream` is a drop-in replacement for Twisted's
``domish.ExpatElementStream`` (the same three event attributes,
``DocumentStartEvent``, ``ElementEvent`` and ``DocumentEndEvent``, and the
same ``parse(data)`` method) that also enforces what XMPP forbids and what a
server must bound:

* comments, processing instructions, DOCTYPE / DTD subsets, entity
  declarations and references to undefined entities raise
  :class:`StreamParseError` with ``restricted-xml``;
* malformed XML and invalid UTF-8 raise ``not-well-formed``; an XML
  declaration naming an encoding other than UTF-8 raises
  ``unsupported-encoding``;
* a top-level stanza larger than ``max_stanza_size`` bytes of unparsed input
  (counted from its first byte as the bytes arrive, including bytes expat is
  still buffering, so a never-ending tag or text node is cut off at the
  limit), nested deeper than ``max_depth``, with an element carrying more
  than ``max_attributes`` attributes (namespace declarations included) or
  holding more than ``max_elements`` elements raises ``policy-violation``.
  The stream header is held to the same size and attribute limits.

Each stream restart (after STARTTLS or SASL) needs a fresh parser: create a
new instance.

A stanza's direct children get no ``parent`` link (the stanza itself has
none either); deeper elements link to theirs as in domish (wokkel's pubsub
parsing reads them). So a stanza is not a reference cycle: a chat message
is freed by reference counting as soon as it is delivered, instead of
waiting for the cycle collector, which took 9-14% of the chat benchmark's
time collecting delivered messages (``benchmarks/README.md``).
"""

from __future__ import annotations

import pyexpat
import re
from collections.abc import Callable

from twisted.words.xish import domish

DEFAULT_MAX_STANZA_SIZE = 256 * 1024
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ATTRIBUTES = 64
DEFAULT_MAX_ELEMENTS = 4096

_UNDEFINED_ENTITY = pyexpat.errors.codes[pyexpat.errors.XML_ERROR_UNDEFINED_ENTITY]


class StreamParseError(Exception):
    """The input violates XML or XMPP rules; ``condition`` names the stream error."""

    def __init__(self, condition: str, text: str | None = None):
        super().__init__(condition, text)
        self.condition = condition
        self.text = text


def _restricted(what: str) -> Callable[..., None]:
    def handler(*args: object) -> None:
        raise StreamParseError("restricted-xml", f"{what} are not allowed in XMPP")

    return handler


# The handlers of what XMPP forbids, made once for every parser (per
# parser they cost each connection 1.8 KiB).
_REFUSE = {
    "CommentHandler": _restricted("comments"),
    "ProcessingInstructionHandler": _restricted("processing instructions"),
    "StartDoctypeDeclHandler": _restricted("document type declarations"),
    "EntityDeclHandler": _restricted("entity declarations"),
    "UnparsedEntityDeclHandler": _restricted("entity declarations"),
    "NotationDeclHandler": _restricted("notation declarations"),
    "ElementDeclHandler": _restricted("element declarations"),
    "AttlistDeclHandler": _restricted("attribute list declarations"),
    "ExternalEntityRefHandler": _restricted("external entities"),
}

#: Element and attribute names seen, shared by every parser (expat's
#: ``intern`` dict: one copy of "jabber:client message" for all
#: connections instead of one per parser). Emptied when it holds more than
#: :data:`MAX_INTERNED` names, so made-up names cannot make it grow for good.
_NAMES: dict[str, str] = {}
MAX_INTERNED = 10_000


#: The expat handlers that are bound methods of the parser object (see ``close``).
_OWN_HANDLERS = ("StartElementHandler", "EndElementHandler", "CharacterDataHandler",
                 "StartNamespaceDeclHandler", "EndNamespaceDeclHandler", "XmlDeclHandler")


#: The name of a start tag as written (prefix included), after its "<".
_START_TAG_NAME = re.compile(rb"<([^\s/>]+)")


def _drop_handlers(parser: pyexpat.XMLParserType) -> None:
    """Clear the handlers that are a parser object's bound methods (its reference cycle)."""
    for name in _OWN_HANDLERS:
        setattr(parser, name, None)


def _ignore(*_: object) -> None:
    """The events of a closed parser."""


class RestrictedElementStream:
    """Parses one XML stream into a root element event and top-level elements."""

    def __init__(
        self,
        max_stanza_size: int = DEFAULT_MAX_STANZA_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ):
        self.DocumentStartEvent: Callable[[domish.Element], None] | None = None
        self.ElementEvent: Callable[[domish.Element], None] | None = None
        self.DocumentEndEvent: Callable[[], None] | None = None
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.max_attributes = max_attributes
        self.max_elements = max_elements

        self.parser: pyexpat.XMLParserType | None = self._new_parser()
        #: The root's name as the peer wrote it and the namespaces it declared:
        #: what a woken parser is fed (None: not known, never hibernate).
        self._root_qname: str | None = None
        self._root_namespaces: list[tuple[str | None, str]] = []
        self._chunk: bytes | None = None  # the data being parsed, until the root is seen
        self._chunk_start = 0
        self._waking = False

        self.current: domish.Element | None = None
        #: The open elements above ``current`` within the stanza (not the stanza).
        self._ancestors: list[domish.Element] = []
        self.depth = 0  # 0: before the root, 1: inside the root, 2+: inside a stanza
        self.default_ns_stack: list[str] = [""]
        self.local_prefixes: dict[str, str] = {}
        self.elements = 0  # elements in the current stanza
        self.fed = 0  # bytes given to the parser so far
        self.mark = 0  # first byte not yet accounted to a finished event
        self.ended = False

    def _new_parser(self) -> pyexpat.XMLParserType:
        if len(_NAMES) > MAX_INTERNED:
            _NAMES.clear()
        parser = pyexpat.ParserCreate("UTF-8", " ", intern=_NAMES)
        parser.StartElementHandler = self._on_start_element
        parser.EndElementHandler = self._on_end_element
        parser.CharacterDataHandler = self._on_cdata
        parser.StartNamespaceDeclHandler = self._on_start_namespace
        parser.EndNamespaceDeclHandler = self._on_end_namespace
        parser.XmlDeclHandler = self._on_xml_decl
        for name, handler in _REFUSE.items():
            setattr(parser, name, handler)
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        return parser

    def hibernate(self) -> bool:
        """Free expat's state (about 11 KiB) while the stream waits between stanzas.

        Only when nothing is half-parsed: inside the root, outside any
        stanza, every byte fed fully processed. The next :meth:`parse` makes
        a fresh parser and feeds it the root's start tag again (same name,
        same namespace declarations), so parsing goes on as if nothing
        happened. Returns False (nothing done) when the stream is not in
        such a state. Never call it from inside a handler.
        """
        parser = self.parser
        if parser is None:
            return True
        if (self.depth != 1 or self._root_qname is None or self.current is not None
                or parser.CurrentByteIndex != self.fed):
            return False
        _drop_handlers(parser)
        self.parser = None
        return True

    @property
    def hibernating(self) -> bool:
        """True while the parser is released (see :meth:`hibernate`)."""
        return self.parser is None

    def _wake(self) -> pyexpat.XMLParserType:
        declarations = "".join(
            f" xmlns='{domish.escapeToXml(uri, 1)}'" if prefix is None
            else f" xmlns:{prefix}='{domish.escapeToXml(uri, 1)}'"
            for prefix, uri in self._root_namespaces
        )
        header = f"<{self._root_qname}{declarations}>".encode()
        parser = self.parser = self._new_parser()
        self.default_ns_stack = [""]
        self.depth = 0
        self._waking = True
        try:
            parser.Parse(header)
        finally:
            self._waking = False
        self.fed = self.mark = parser.CurrentByteIndex
        return parser

    def close(self) -> None:
        """Deliver no more events and break the reference cycle with expat.

        expat holds this object's bound methods as its handlers, so a parser
        that is done with (three per login: one per stream restart) and the
        stream it reports to would otherwise wait for the cycle collector.
        Safe inside a handler: the rest of the data being parsed is ignored.
        """
        self.DocumentStartEvent = self.ElementEvent = self.DocumentEndEvent = _ignore
        if self.parser is not None:
            _drop_handlers(self.parser)

    def parse(self, data: bytes) -> None:
        """Feed bytes; raise StreamParseError on any violation."""
        parser = self.parser
        if parser is None:  # hibernating (so inside the root, between stanzas)
            parser = self._wake()
        before_root = self.depth == 0
        if before_root:
            self._chunk, self._chunk_start = data, self.fed
        self.fed += len(data)
        try:
            parser.Parse(data)
        except pyexpat.ExpatError as e:
            if e.code == _UNDEFINED_ENTITY:
                raise StreamParseError(
                    "restricted-xml", "entity references are not allowed"
                ) from None
            raise StreamParseError("not-well-formed", pyexpat.errors.messages[e.code]) from None
        finally:
            if before_root:
                self._chunk = None
        if self.fed - self.mark > self.max_stanza_size:
            raise StreamParseError("policy-violation", "stanza size limit exceeded")

    # -- expat handlers -------------------------------------------------

    def _on_xml_decl(self, version: str, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise StreamParseError("unsupported-encoding", "only UTF-8 is supported")

    def _on_start_element(self, name: str, attrs: dict) -> None:
        if len(attrs) + len(self.local_prefixes) > self.max_attributes:
            raise StreamParseError("policy-violation", "too many attributes")
        qname = name.rsplit(" ", 1)
        if len(qname) == 1:
            qname = ["", name]
        attributes: dict = {}
        for key, value in attrs.items():
            if " " in key:
                uri, local = key.rsplit(" ", 1)
                attributes[(uri, local)] = value
            else:
                attributes[key] = value
        element = domish.Element(
            (qname[0], qname[1]), self.default_ns_stack[-1], attributes, self.local_prefixes
        )
        self.local_prefixes = {}

        if self.depth == 0:
            self.depth = 1
            if self._waking:
                return  # the root's start tag again, for a woken parser
            self._remember_root(element)
            self.mark = self.parser.CurrentByteIndex
            self.DocumentStartEvent(element)
            return

        if self.depth >= self.max_depth:
            raise StreamParseError("policy-violation", "element nesting too deep")
        if self.depth == 1:
            self.mark = self.parser.CurrentByteIndex
            self.elements = 1
        else:
            self.elements += 1
            if self.elements > self.max_elements:
                raise StreamParseError("policy-violation", "too many elements in one stanza")
            current = self.current
            current.children.append(element)
            if self.depth > 2:
                element.parent = current
            self._ancestors.append(current)
        self.current = element
        self.depth += 1

    def _remember_root(self, root: domish.Element) -> None:
        """Note the root's name as written and its declarations (for :meth:`_wake`)."""
        chunk = self._chunk
        index = self.parser.CurrentByteIndex - self._chunk_start
        if chunk is None or not 0 <= index < len(chunk):
            return  # the start tag began in an earlier chunk: never hibernate
        found = _START_TAG_NAME.match(chunk, index)
        if found is None or found.end() >= len(chunk):
            return
        declarations: list[tuple[str | None, str]] = list(root.localPrefixes.items())
        if len(self.default_ns_stack) > 1:
            declarations.insert(0, (None, self.default_ns_stack[-1]))
        self._root_namespaces = declarations
        self._root_qname = found.group(1).decode("utf-8")

    def _on_end_element(self, name: str) -> None:
        if self.depth == 1:
            self.depth = 0
            self.ended = True
            self.DocumentEndEvent()
            return
        self.depth -= 1
        element = self.current
        if self.depth == 1:
            self.current = None
            position = self.parser.CurrentByteIndex
            if position - self.mark > self.max_stanza_size:
                raise StreamParseError("policy-violation", "stanza size limit exceeded")
            self.mark = position
            if len(_NAMES) > MAX_INTERNED:
                _NAMES.clear()
            self.ElementEvent(element)
        else:
            self.current = self._ancestors.pop()

    def _on_cdata(self, data: str) -> None:
        if self.depth >= 2:
            self.current.addContent(data)
        elif self.depth == 1:
            # Character data between stanzas (whitespace keepalives): dropped.
            self.mark = self.parser.CurrentByteIndex + len(data.encode("utf-8"))

    def _on_start_namespace(self, prefix: str | None, uri: str | None) -> None:
        if prefix is None:
            self.default_ns_stack.append(uri or "")
        else:
            self.local_prefixes[prefix] = uri or ""

    def _on_end_namespace(self, prefix: str | None) -> None:
        if prefix is None:
            self.default_ns_stack.pop()
