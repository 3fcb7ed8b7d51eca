"""The BOSH endpoint (XEP-0124/0206) on the HTTP listener: ``[bosh] path``.

:func:`mount_bosh` serves :class:`BoshResource` at ``/http-bind`` and lists
it in host-meta (XEP-0156). :class:`BoshEndpoint` holds the sessions:

* ``POST`` a ``<body xmlns='http://jabber.org/protocol/httpbind'/>``:
  without ``sid`` it creates a session (a ``to`` we do not serve is
  ``type='terminate' condition='host-unknown'``), with one it goes to that
  :class:`~xmppd.bosh.session.BoshSession` (an unknown ``sid`` is
  ``type='terminate' condition='item-not-found'``). Terminal conditions
  are HTTP 200 bodies (XEP-0124 section 17, as Prosody); a request that is
  not a ``<body/>`` at all (bad XML, another root) is HTTP 400, its
  session untouched (there is no reliable ``sid`` to end); a body over
  ``max_body_size`` is 413 from the listener before it is read.
* ``OPTIONS``: the CORS preflight; ``GET``: a short page saying what this is.

Responses are ``text/xml; charset=utf-8`` with the CORS headers of
``[bosh] cors_origins``. A session counts as encrypted (credentials
accepted) when created over HTTPS, or over plain HTTP from loopback or a
trusted proxy (``secure_from_trusted``), as for the WebSocket.
"""

from __future__ import annotations

import secrets
from typing import Any

from twisted.web import resource, server
from twisted.words.protocols.jabber import jid

from xmppd.addresses import JID_ERRORS
from xmppd.bosh.body import NS_XBOSH, BadRequest, Body, parse_body, render_body, version_text
from xmppd.bosh.session import BoshC2SFactory, BoshSession
from xmppd.http.hostmeta import REL_BOSH
from xmppd.logs import logger
from xmppd.ws.stream import client_address
from xmppd.ws.websocket import origin_allowed

log = logger(__name__)

CONTENT_TYPE = b"text/xml; charset=utf-8"

_PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>xmppd BOSH</title></head>
<body><p>This is an XMPP over BOSH endpoint (XEP-0124, XEP-0206). Point a BOSH
client at this URL; it takes POST requests of &lt;body/&gt; elements.</p></body></html>
"""


def _serves(to: str | None, domain: str) -> bool:
    try:
        address = jid.JID(to) if to else None
    except JID_ERRORS:
        return False
    return address is not None and address.user is None and address.resource is None \
        and address.host == domain


def _trace(session: BoshSession, data: bytes) -> None:
    """The request body for the traffic log (debug level; it redacts credentials)."""
    stream = session.stream
    if stream is not None and stream.rawDataInFn is not None:
        stream.rawDataInFn(data)


class BoshEndpoint:
    """The sessions of the BOSH endpoint and the limits across them."""

    def __init__(self, settings: Any, reactor: Any = None):
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.reactor = reactor
        self.c2s: BoshC2SFactory | None = None
        self.sessions: dict[str, BoshSession] = {}
        self.per_address: dict[str, int] = {}

    def use(self, c2s: BoshC2SFactory) -> None:
        """Build the sessions' streams with this c2s factory."""
        self.c2s = c2s

    @property
    def max_body_size(self) -> int:
        """The largest request body (``0`` in the settings: the stanza limit plus 16 KiB)."""
        size = self.settings.max_body_size
        if size:
            return size
        limits = self.c2s.limits if self.c2s is not None else None
        return (limits.max_stanza_size if limits is not None else 262144) + 16384

    # -- responses -----------------------------------------------------------------

    def deliver(self, request: Any, data: bytes) -> None:
        """Send a response body and end the request (unless its connection is gone)."""
        if getattr(request, "finished", False) or getattr(request, "_disconnected", False):
            return
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.write(data)
        request.finish()

    def forget(self, session: BoshSession) -> None:
        """An ended session: its sid is unknown from now on."""
        if self.sessions.pop(session.sid, None) is not None:
            left = self.per_address.get(session.address, 1) - 1
            if left > 0:
                self.per_address[session.address] = left
            else:
                self.per_address.pop(session.address, None)

    # -- requests ------------------------------------------------------------------

    def handle(self, request: Any, data: bytes, address: str, secure: bool) -> None:
        """One POST: a body for a session, or a session creation."""
        body = parse_body(data, self.c2s.limits)
        sid = body.get("sid")
        if sid is not None:
            session = self.sessions.get(sid)
            if session is None:
                self.deliver(request, render_body([("type", "terminate"),
                                                   ("condition", "item-not-found")]))
                return
            _trace(session, data)
            session.handle(request, body)
            return
        self.create(request, body, address, secure, data)

    def create(self, request: Any, body: Body, address: str, secure: bool,
               data: bytes = b"") -> None:
        """A session creation request (XEP-0124 section 7.1, XEP-0206 section 3)."""
        settings, c2s = self.settings, self.c2s

        def refuse(condition: str) -> None:
            self.deliver(request, render_body([("type", "terminate"),
                                               ("condition", condition)]))

        rid = body.number("rid")
        if rid is None or rid < 1 or body.get("type") == "terminate":
            refuse("bad-request")
            return
        if not _serves(body.get("to"), c2s.domain):
            refuse("host-unknown")
            return
        limit = settings.max_sessions_per_address
        if limit and self.per_address.get(address, 0) >= limit:
            log.info("refusing a BOSH session from {address}: too many", address=address)
            refuse("policy-violation")
            return
        wait = body.number("wait")
        wait = settings.max_wait if wait is None else min(wait, settings.max_wait)
        hold = body.number("hold")
        hold = min(1 if hold is None else hold, settings.max_hold, settings.max_requests - 1)
        requests = hold + 1
        sid = secrets.token_urlsafe(24)
        session = BoshSession(
            self, sid, rid=rid, to=c2s.domain, lang=body.get(("http://www.w3.org/XML/1998/"
                                                               "namespace", "lang")),
            wait=wait, hold=hold, requests=requests, inactivity=settings.max_inactivity,
            polling=settings.polling, maxpause=settings.max_pause,
            acks=body.get("ack") is not None, address=address,
            version=body.get((NS_XBOSH, "version")), sender=body.get("from"))
        self.sessions[sid] = session
        self.per_address[address] = self.per_address.get(address, 0) + 1
        stream = c2s.buildProtocol(client_address(address, 0))
        stream.authenticator.tls_active = secure
        session.attach(stream, client_address(address, 0))
        _trace(session, data)
        attributes = [
            ("sid", sid), ("wait", str(wait)), ("requests", str(requests)),
            ("hold", str(hold)), ("inactivity", str(settings.max_inactivity)),
            ("polling", str(settings.polling)), ("maxpause", str(settings.max_pause)),
            ("ver", version_text(body.get("ver"))), ("from", c2s.domain),
            ("secure", "true"), ("xmpp:version", "1.0"), ("xmpp:restartlogic", "true"),
        ]
        if session.ended:  # refused at connect (the guard's limits): the stream error
            self.deliver(request, session.final)
            return
        session.start(request, body, attributes)


class BoshResource(resource.Resource):
    """``/http-bind``: POST bodies, the CORS preflight, a page for GET."""

    isLeaf = True

    def __init__(self, endpoint: BoshEndpoint):
        super().__init__()
        self.endpoint = endpoint

    def max_body_size(self, method: bytes) -> int | None:
        """The listener refuses larger POST bodies with 413 before reading them."""
        return self.endpoint.max_body_size if method == b"POST" else None

    def _cors(self, request: Any) -> None:
        allowed = self.endpoint.settings.cors_origins
        if not allowed:
            return
        origin = request.getHeader(b"origin")
        if "*" in allowed:
            request.setHeader(b"access-control-allow-origin", b"*")
        elif origin is not None and origin_allowed(origin.decode("latin-1"), allowed):
            request.setHeader(b"access-control-allow-origin", origin)
            request.setHeader(b"vary", b"Origin")
        else:
            return
        request.setHeader(b"access-control-allow-methods", b"GET, POST, OPTIONS")
        request.setHeader(b"access-control-allow-headers", b"Content-Type")
        request.setHeader(b"access-control-max-age", b"7200")

    def render_OPTIONS(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's API
        """The CORS preflight: the allowed methods and headers, no body."""
        self._cors(request)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b""

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's API
        """A page saying this is a BOSH endpoint (as Prosody's)."""
        self._cors(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _PAGE

    def render_POST(self, request: Any) -> Any:  # noqa: N802 - twisted.web's API
        """A ``<body/>``: answered now or later (held), in rid order."""
        self._cors(request)
        endpoint = self.endpoint
        if endpoint.c2s is None:
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not ready\n"
        data = request.content.read() if request.content is not None else b""
        if hasattr(request, "client_ip"):
            address = request.client_ip()
            secure = request.isSecure() or (endpoint.settings.secure_from_trusted
                                            and request.is_secure_origin())
        else:
            address, secure = request.getClientAddress().host, request.isSecure()
        try:
            endpoint.handle(request, data, address, secure)
        except BadRequest as e:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return f"not a BOSH body: {e}\n".encode()
        except Exception:
            log.failure("unexpected error handling a BOSH request")
            if not request.finished:
                request.setResponseCode(500)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return b"internal server error\n"
        return server.NOT_DONE_YET


def mount_bosh(http_service: Any, settings: Any, reactor: Any = None) -> BoshEndpoint:
    """Serve the endpoint at ``settings.path`` and list it in host-meta.

    Its sessions are built once :meth:`BoshEndpoint.use` gave it a c2s
    factory (until then POST gets 503).
    """
    endpoint = BoshEndpoint(settings, reactor=reactor)
    http_service.mount(settings.path, BoshResource(endpoint))
    http_service.add_link(REL_BOSH, settings.path)
    return endpoint
