"""A client stream over WebSocket (RFC 7395): the c2s stream with message framing.

:class:`WebSocketStream` is a :class:`~xmppd.c2s.stream.C2SStream` (so the
same :class:`~xmppd.c2s.negotiation.C2SAuthenticator`, limits, guard,
session manager, idle ping and stream management) whose framing differs:

* input arrives as whole messages (:meth:`WebSocketStream.message_received`):
  each must be exactly one complete element (:func:`parse_message`); else
  ``not-well-formed`` (or the parser's ``restricted-xml``,
  ``policy-violation``, ...). The client's
  ``<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to= version=/>``
  starts (and after SASL restarts) the stream: it is handed to the
  authenticator as the stream header it stands for; ``<close/>`` ends it.
* output is one message per element: our header is ``<open/>``, our
  footer ``<close/>``, and every element declares its namespaces
  (``<message xmlns='jabber:client'>``,
  ``<stream:features xmlns:stream='http://etherx.jabber.org/streams'>``).

The element framing (whole elements in, one self-contained element per
write out) is :class:`ElementFramedStream`, shared with BOSH
(:mod:`xmppd.bosh`); :class:`WebSocketStream` adds the messages and the
``<open/>``/``<close/>`` of RFC 7395.

:class:`WebSocketC2SFactory` is the :class:`~xmppd.c2s.factory.C2SFactory`
for these streams: it never offers STARTTLS (TLS is the WebSocket's
business) and takes credentials only on connections that count as
encrypted (``wss://``, or plain ``ws://`` from loopback or a trusted proxy;
see :mod:`xmppd.ws.websocket`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import address
from twisted.python import failure
from twisted.words.xish import domish

from xmppd.c2s.factory import C2SFactory
from xmppd.c2s.stream import (
    FOREIGN_STANZA_NAMESPACES,
    NS_CLIENT,
    NS_STREAMS,
    C2SStream,
    _new_stream_id,
    _StopParsing,
)
from xmppd.c2s.xmlparser import RestrictedElementStream, StreamParseError
from xmppd.logs import logger
from xmppd.stanza import remembered_xml, xml_text

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_XML = "http://www.w3.org/XML/1998/namespace"

log = logger(__name__)

# Each message is parsed inside this wrapper, so that an element without an
# xmlns is in jabber:client (as Prosody takes it) and stream: resolves.
_WRAPPER_OPEN = (f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>").encode()
_WRAPPER_CLOSE = b"</stream:stream>"
_STANZA_NAMESPACES = (NS_CLIENT, *FOREIGN_STANZA_NAMESPACES)


class _MessageParser(RestrictedElementStream):
    """The restricted parser for one message: text beside the element is an error."""

    def _on_cdata(self, data: str) -> None:
        if self.depth == 1 and data.strip():
            raise StreamParseError("not-well-formed", "text outside the message's element")
        super()._on_cdata(data)


class MessageParser:
    """Parses one connection's messages, each of which must hold one whole element.

    One restricted parser serves every message of the connection (making
    one costs more than parsing a stanza): it is fed our wrapper's start
    tag once, then each message; after a message it must be back between
    elements with exactly one element found. Whitespace around the element
    is allowed; nothing else is: no XML declaration, no second element, no
    text, no half element. After an error the parser is not used again
    (the stream ends).
    """

    def __init__(self, limits: Any):
        self.limits = limits
        self._parser: _MessageParser | None = None
        self._found: list[domish.Element] = []

    def parse(self, payload: bytes) -> domish.Element:
        """The message's element (StreamParseError if it is not exactly one whole one)."""
        limits = self.limits
        if len(payload) > limits.max_stanza_size:
            raise StreamParseError("policy-violation", "stanza size limit exceeded")
        parser = self._parser
        if parser is None:
            parser = _MessageParser(
                max_stanza_size=limits.max_stanza_size,
                max_depth=limits.max_depth,
                max_attributes=limits.max_attributes,
                max_elements=limits.max_elements,
            )
            parser.DocumentStartEvent = _ignore
            parser.ElementEvent = self._found.append
            parser.DocumentEndEvent = _ignore
            parser.parse(_WRAPPER_OPEN)
            self._parser = parser
        found = self._found
        found.clear()
        try:
            parser.parse(payload)
        except StreamParseError:
            self.close()
            raise
        if parser.depth != 1:
            self.close()
            raise StreamParseError("not-well-formed", "a message must hold one whole element")
        if len(found) != 1:
            self.close()
            raise StreamParseError("not-well-formed", "a message must hold exactly one element")
        element = found[0]
        found.clear()
        return element

    def close(self) -> bool:
        """Drop the parser (after an error); the next message starts a fresh one.

        True if there was one.
        """
        parser, self._parser = self._parser, None
        if parser is None:
            return False
        parser.close()
        return True


def _ignore(*args: Any) -> None:
    pass


def parse_message(payload: bytes, limits: Any) -> domish.Element:
    """The one element a WebSocket message holds (StreamParseError if it is not that).

    A :class:`MessageParser` of its own: streams keep one for all their messages.
    """
    messages = MessageParser(limits)
    try:
        return messages.parse(payload)
    finally:
        messages.close()


def serialize(element: domish.Element) -> str:
    """One element as a self-contained message: every namespace declared on it."""
    uri = element.uri or element.defaultUri or NS_CLIENT  # none: jabber:client, as on TCP
    if uri in _STANZA_NAMESPACES and element.defaultUri in (None, uri):
        if element.uri in (NS_CLIENT, None):
            noted = remembered_xml(element)  # the stored form is this form
            if noted is not None:
                return noted
        # As on a TCP stream (inheriting the default namespace), then the
        # namespace declared: stanzas from S2S or components become
        # jabber:client like on TCP.
        text = xml_text(element, None, uri)
        cut = len(element.name) + 1
        return f"{text[:cut]} xmlns='{NS_CLIENT}'{text[cut:]}"
    return element.toXml(prefixes={NS_STREAMS: "stream"}, prefixesInScope=[])


def stream_header(opening: domish.Element) -> domish.Element:
    """The stream header an ``<open/>`` stands for (what the authenticator checks)."""
    root = domish.Element((NS_STREAMS, "stream"), defaultUri=NS_CLIENT)
    for name in ("to", "from", "version", "id"):
        value = opening.getAttribute(name)
        if value is not None:
            root[name] = value
    lang = opening.getAttribute((NS_XML, "lang"))
    if lang is not None:
        root[(NS_XML, "lang")] = lang
    return root


class MessageTransport:
    """The transport a :class:`WebSocketStream` writes to: one write, one text message.

    ``websocket`` is the autobahn protocol carrying the stream; ``peer`` the
    client's address (the forwarded one behind a trusted proxy).
    """

    disconnecting = False

    def __init__(self, websocket: Any, peer: Any):
        self.websocket = websocket
        self.peer = peer

    def write(self, data: bytes) -> None:
        """Send one text message (dropped once the WebSocket is closing)."""
        if not self.disconnecting and self.websocket.state == self.websocket.STATE_OPEN:
            self.websocket.sendMessage(data, isBinary=False)

    def writeSequence(self, data: list[bytes]) -> None:  # noqa: N802 - Twisted's API
        """Send the pieces as one message."""
        self.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's API
        """Close the WebSocket (the closing handshake, then the TCP connection)."""
        if self.disconnecting:
            return
        self.disconnecting = True
        if self.websocket.state == self.websocket.STATE_OPEN:
            self.websocket.sendClose(1000)

    def abortConnection(self) -> None:  # noqa: N802 - Twisted's API
        """Drop the TCP connection at once."""
        self.disconnecting = True
        self.websocket.transport.abortConnection()

    def getPeer(self) -> Any:  # noqa: N802 - Twisted's API
        """The client's address."""
        return self.peer

    def getHost(self) -> Any:  # noqa: N802 - Twisted's API
        """Our end of the TCP connection."""
        return self.websocket.transport.getHost()

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's API
        """Stop reading from the socket (read-rate limit)."""
        self.websocket.transport.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's API
        """Read again."""
        self.websocket.transport.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's API
        """Drop the connection."""
        self.abortConnection()


def client_address(host: str, port: int) -> Any:
    """A Twisted address object for the client's address."""
    kind = address.IPv6Address if ":" in host else address.IPv4Address
    return kind("TCP", host, port)


class ElementFramedStream(C2SStream):
    """A client stream whose input arrives as parsed elements and whose output is
    one self-contained element per write (RFC 7395's WebSocket, XEP-0206's BOSH).

    The transport hands in whole elements (:meth:`element_received`) and
    opens (and after SASL reopens) the stream with the header its framing
    stands for (:meth:`open_stream`); each element written declares its
    namespaces (:func:`serialize`). Subclasses say what the stream header and
    footer look like on the wire.
    """

    def __init__(self, authenticator: Any, factory: Any):
        #: Whether the client opened the current stream (its header arrived).
        self.opened = False
        super().__init__(authenticator, factory)

    # -- input -------------------------------------------------------------------

    def _initializeStream(self) -> None:
        """A new stream (at connect and each restart): wait for the client to open it."""
        self._queue = []
        self.opened = False
        self.stream = None

    def dataReceived(self, data: bytes) -> None:
        """Not used: input arrives as whole elements."""
        raise NotImplementedError("an element-framed stream receives whole elements")

    def open_stream(self, header: domish.Element) -> None:
        """The client opens the stream with this header (see :func:`stream_header`)."""
        if self.closing:
            return
        if self.opened:
            self.stream_error("bad-format", "the stream is open already")
            return
        self.opened = True
        self._guard(self.onDocumentStart, header)

    def element_received(self, element: domish.Element) -> None:
        """One top-level element from the client (after :meth:`open_stream`)."""
        if self.closing:
            return
        try:
            self.onElement(element)
        except _StopParsing:
            pass

    def client_closed(self) -> None:
        """The client closed its stream: close ours."""
        if self.closing:
            return
        try:
            self.onDocumentEnd()
        except _StopParsing:
            pass

    def _process(self, element: domish.Element) -> None:
        if not self.opened:
            self.stream_error("bad-format", "open the stream first")
            return
        super()._process(element)

    def onDocumentStart(self, rootElement: domish.Element) -> None:
        """The client's header: let the authenticator check it."""
        try:
            super().onDocumentStart(rootElement)
        except _StopParsing:
            pass

    # -- output --------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        """One element to the client (its namespaces declared)."""
        if domish.IElement.providedBy(obj):
            obj = serialize(obj)
        super().send(obj)

    def element_text(self, element: domish.Element) -> str:
        """One element as a self-contained message (its namespaces declared)."""
        return serialize(element)

    def write_stanza(self, element: domish.Element) -> None:
        """Serialise a stanza for this client as ``jabber:client`` (without modifying it)."""
        if self.closing:
            return
        self.send(serialize(element))

    def connection_dropped(self, reason: failure.Failure) -> None:
        """The transport is gone (closed or dropped): end the stream."""
        if not self.lost:
            self.transport.disconnecting = True
            self.connectionLost(reason)


class WebSocketStream(ElementFramedStream):
    """A client stream framed by WebSocket messages (RFC 7395)."""

    #: The parser of this connection's messages (made with the first one).
    _messages: MessageParser | None = None

    # -- input -------------------------------------------------------------------

    def message_received(self, payload: bytes) -> None:
        """One WebSocket text message from the client."""
        self._quiet = False
        if self.closing:
            return
        self._heard_from_peer()
        if self.rawDataInFn:
            self.rawDataInFn(payload)
        messages = self._messages
        if messages is None:
            messages = self._messages = MessageParser(self.factory.limits)
        try:
            element = messages.parse(payload)
        except StreamParseError as e:
            self.stream_error(e.condition, e.text)
            return
        except Exception:
            log.failure("unexpected error while parsing a WebSocket message")
            self.stream_error("internal-server-error")
            return
        if element.uri == NS_FRAMING and element.name == "close":
            self.client_closed()
        else:
            self.element_received(element)
        self._throttle(len(payload))

    def _release_parser(self) -> bool:
        messages = self._messages
        # Between messages: the next one makes a new parser.
        return messages is not None and messages.close()

    def _process(self, element: domish.Element) -> None:
        if element.uri == NS_FRAMING and element.name == "open":
            self.open_stream(stream_header(element))
            return
        if not self.opened:
            if element.name == "open":
                self.stream_error("invalid-namespace", f"<open/> is in {NS_FRAMING}")
            else:
                self.stream_error("bad-format", "open the stream with <open/> first")
            return
        if element.uri == NS_FRAMING:
            self.stream_error("unsupported-stanza-type")
            return
        super()._process(element)

    # -- output --------------------------------------------------------------------

    def sendHeader(self) -> None:
        """Our ``<open/>`` with a fresh stream id."""
        self.sid = _new_stream_id()
        attributes = [("xmlns", NS_FRAMING), ("id", self.sid), ("from", self.factory.domain)]
        if self.peer:
            attributes.append(("to", self.peer))
        attributes += [("version", "1.0"), ("xml:lang", self.lang)]
        header = "".join(f" {k}='{domish.escapeToXml(v, 1)}'" for k, v in attributes)
        self.send(f"<open{header}/>")
        self._headerSent = True

    def sendFooter(self) -> None:
        """Our ``<close/>`` (once)."""
        if not self._footer_sent:
            self.send(f"<close xmlns='{NS_FRAMING}'/>")
            self._footer_sent = True


class WebSocketC2SFactory(C2SFactory):
    """The c2s factory of WebSocket streams: no STARTTLS, credentials only when encrypted."""

    protocol = WebSocketStream

    @property
    def tls_options(self) -> None:
        """Never any: STARTTLS is not offered on a WebSocket (a reload cannot set it)."""
        return None

    @tls_options.setter
    def tls_options(self, value: Any) -> None:
        pass

    @property
    def require_encryption(self) -> bool:
        """Always: authentication only on a connection that counts as encrypted."""
        return True
