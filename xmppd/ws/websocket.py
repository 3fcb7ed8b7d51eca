"""The WebSocket endpoint (RFC 7395) on the HTTP listener, with autobahn.

:func:`mount_websocket` serves ``[websocket] path`` (``/xmpp-websocket``)
on the :class:`~xmppd.http.site.HTTPService` and announces it in host-meta
(XEP-0156). The upgrade request goes through the listener like any other
(rate limit, access log); :class:`XMPPWebSocketResource` then hands the
connection to autobahn's :class:`XMPPWebSocketProtocol`, which

* refuses (HTTP 400) a handshake that does not offer the ``xmpp``
  subprotocol, and (403) a browser ``Origin`` not in
  ``[websocket] allowed_origins`` when that list is not empty;
* carries one :class:`~xmppd.ws.stream.WebSocketStream` (built by a
  :class:`~xmppd.ws.stream.WebSocketC2SFactory` sharing the TCP listeners'
  guard and session manager), feeding it each text message;
* pings the client every ``ping_interval`` seconds (autobahn's auto-ping)
  and drops it when no pong comes within ``ping_timeout``.

Messages are bounded by ``[limits] max_stanza_size`` (a larger one gets the
``policy-violation`` stream error); autobahn itself refuses messages of
more than twice that (WebSocket close 1009) so that nothing unbounded is
buffered.

A connection counts as encrypted (credentials accepted, like TLS on
TCP) over ``wss://``, and over plain ``ws://`` from loopback or a trusted
proxy unless ``secure_from_trusted`` is off (or the proxy forwarded
``X-Forwarded-Proto: http``).
"""

from __future__ import annotations

import fnmatch
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import error
from twisted.python import failure

from xmppd.http.hostmeta import REL_WEBSOCKET
from xmppd.logs import logger
from xmppd.ws.stream import MessageTransport, WebSocketC2SFactory, client_address

SUBPROTOCOL = "xmpp"

log = logger(__name__)
access_log = logger("xmppd.http.access")


def normalized_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, the scheme's default port left out."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    suffix = f":{port}" if port not in (None, default) else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a handshake's ``Origin`` may connect (``*`` in a host matches labels)."""
    if not allowed or origin is None:
        return True
    mine = normalized_origin(origin)
    if mine is None:
        return False
    return any(fnmatch.fnmatchcase(mine, normalized_origin(pattern) or "")
               for pattern in allowed)


class XMPPWebSocketProtocol(WebSocketServerProtocol):
    """One WebSocket connection carrying one client stream."""

    #: Set by the resource from the HTTP request: the client's address
    #: (forwarded behind a trusted proxy) and whether it counts as encrypted.
    client_ip = ""
    secure = False
    stream: Any = None

    def onConnect(self, request: Any) -> str:  # noqa: N802 - autobahn's API
        """Accept the ``xmpp`` subprotocol from an allowed origin; refuse anything else."""
        if SUBPROTOCOL not in request.protocols:
            self._access(request, 400, "no xmpp subprotocol")
            raise ConnectionDeny(400, "the xmpp subprotocol is required (RFC 7395)")
        allowed = self.factory.settings.allowed_origins
        if not origin_allowed(request.headers.get("origin"), allowed):
            self._access(request, 403, f"origin {request.headers.get('origin')} not allowed")
            raise ConnectionDeny(403, "origin not allowed")
        self._access(request, 101, "WebSocket")
        return SUBPROTOCOL

    def _access(self, request: Any, code: int, note: str) -> None:
        # The HTTP listener logs a request when it finishes; an upgrade never does.
        access_log.info('{ip} "GET {path}" {code} {note} "{agent}"', ip=self.client_ip,
                        path=request.path[:200], code=code, note=note[:200],
                        agent=request.headers.get("user-agent", "-")[:200])

    def onOpen(self) -> None:  # noqa: N802 - autobahn's API
        """The handshake is done: start the client stream."""
        c2s = self.factory.c2s
        peer = self.transport.getPeer()
        where = client_address(self.client_ip or peer.host, getattr(peer, "port", 0))
        stream = c2s.buildProtocol(where)
        stream.authenticator.tls_active = self.secure
        self.stream = stream
        stream.makeConnection(MessageTransport(self, where))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        """One message for the stream (text only, RFC 7395 section 3.2)."""
        if self.stream is None:
            return
        if isBinary:
            self.stream.stream_error("bad-format", "XMPP messages are text messages")
            return
        self.stream.message_received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        """The WebSocket is closed: the stream ends (a drop leaves SM sessions resumable)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            cause = error.ConnectionDone if wasClean else error.ConnectionLost
            stream.connection_dropped(failure.Failure(cause()))


class XMPPWebSocketFactory(WebSocketServerFactory):
    """autobahn's factory for the endpoint; ``c2s`` builds the client streams."""

    protocol = XMPPWebSocketProtocol

    def __init__(self, settings: Any, c2s: WebSocketC2SFactory | None = None,
                 reactor: Any = None):
        super().__init__(server="xmppd", protocols=[SUBPROTOCOL], reactor=reactor)
        self.settings = settings
        self.c2s = c2s
        self._upgrading: tuple[str, bool] | None = None

    def use(self, c2s: WebSocketC2SFactory) -> None:
        """Build the streams with this c2s factory (and its ``[limits]``)."""
        self.c2s = c2s
        size = c2s.limits.max_stanza_size
        settings = self.settings
        self.setProtocolOptions(
            webStatus=False,
            failByDrop=False,
            maxMessagePayloadSize=2 * size,
            maxFramePayloadSize=2 * size,
            autoPingInterval=settings.ping_interval or None,
            autoPingTimeout=settings.ping_timeout if settings.ping_interval else None,
            openHandshakeTimeout=30,
            closeHandshakeTimeout=5,
        )

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's API
        """A connection's protocol, with what the HTTP request told about the client."""
        if self.c2s is None:
            return None
        protocol = super().buildProtocol(addr)
        if self._upgrading is not None:
            protocol.client_ip, protocol.secure = self._upgrading
        return protocol


class XMPPWebSocketResource(WebSocketResource):
    """The endpoint's resource: passes the request's client address and security on."""

    def __init__(self, factory: XMPPWebSocketFactory, secure_from_trusted: bool):
        super().__init__(factory)
        self.secure_from_trusted = secure_from_trusted

    def render(self, request: Any) -> Any:
        """Hand the connection to autobahn (it answers the handshake)."""
        factory = self._factory
        secure = request.isSecure() or (
            self.secure_from_trusted and request.is_secure_origin())
        factory._upgrading = (request.client_ip(), secure)
        try:
            return super().render(request)
        finally:
            factory._upgrading = None


def mount_websocket(http_service: Any, settings: Any, reactor: Any = None) -> XMPPWebSocketFactory:
    """Serve the endpoint at ``settings.path`` and list it in host-meta.

    Its streams are built once :meth:`XMPPWebSocketFactory.use` gave it a
    c2s factory (until then the upgrade gets 500).
    """
    factory = XMPPWebSocketFactory(settings, reactor=reactor)
    http_service.mount(settings.path, XMPPWebSocketResource(factory,
                                                            settings.secure_from_trusted))
    http_service.add_link(REL_WEBSOCKET, settings.path)
    return factory
