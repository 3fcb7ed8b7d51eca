"""The HTTP listener: twisted.web with limits, trusted proxies and an access log.

:class:`HTTPService` owns one resource tree that both listeners (``[http]
listen``, plain, and ``tls_listen``, HTTPS with the server's certificate)
serve. Services mount resources at paths (:meth:`HTTPService.mount`);
every other path is 404. A mounted resource may define, besides the usual
``render_*`` methods:

* ``max_body_size(method: bytes) -> int | None`` — the largest request body
  it takes (None: ``[http] max_request_size``);
* ``content_file(method: bytes, path: bytes, length: int | None)`` — a named
  file (``tempfile.NamedTemporaryFile(delete=False)``) the body is streamed
  into instead of twisted.web's own (memory or anonymous temp file), or
  None; the listener deletes it when the request ends unless the resource
  renamed it;
* ``refuse_early(request, method, path) -> (code, reason) | None`` — checks
  on the headers alone, before any of the body is read.

A body larger than its limit (announced or streamed) gets 413, and a
client address (the forwarded one behind a trusted proxy) over
``request_rate`` gets 429, as soon as the headers are in: the connection is
then closed without reading the body. Every request is logged in
the access log (namespace ``xmppd.http.access``, level info).

Behind a reverse proxy, ``X-Forwarded-For`` and ``X-Forwarded-Proto`` count
only when the connection comes from loopback or from ``[http]
trusted_proxies``; :meth:`HTTPRequest.client_ip` and
:meth:`HTTPRequest.is_secure_origin` give the result.
"""

from __future__ import annotations

import io
import ipaddress
import os
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.application import service
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import resource, server

from xmppd.logs import logger
from xmppd.ratelimit import TokenBucket

log = logger(__name__)
access_log = logger("xmppd.http.access")

#: Addresses whose rate buckets are remembered at most (oldest forgotten first).
MAX_TRACKED_ADDRESSES = 65536

_REASONS = {400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
            409: b"Conflict", 413: b"Content Too Large", 429: b"Too Many Requests"}


def _ip(text: str) -> Any:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class NotFound(resource.Resource):
    """404 for every method and every path below it."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        """404 Not Found."""
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"not found\n"


class Folder(resource.Resource):
    """An intermediate path segment of mounted resources: 404 itself."""

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:  # noqa: N802
        """Unknown children are 404."""
        return NotFound()

    def render(self, request: server.Request) -> bytes:
        """The folder itself is 404."""
        return NotFound().render(request)


class HTTPRequest(server.Request):
    """A request with the listener's limits, trusted proxies and temp file handling."""

    _refused = False
    _received = 0
    _limit: int | None = None
    _temp_path: str | None = None

    @property
    def site_(self) -> HTTPSite:
        """The site (the channel's ``site``)."""
        return self.channel.site

    def _target(self) -> tuple[bytes, bytes, Any]:
        # The method and path are known to the channel once the request
        # line was read; twisted.web sets them on the request only after the
        # body arrived.
        method = getattr(self.channel, "_command", b"") or b""
        path = getattr(self.channel, "_path", b"") or b""
        return method, path, self.site_.service.resource_for(path.split(b"?", 1)[0])

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's API
        """Pick the body's limit and file; refuse at once what is too large."""
        method, path, target = self._target()
        if not self.site_.allow(self.client_ip()):
            self.refuse_now(429, "too many requests", ((b"Retry-After", b"1"),))
            return
        limit = self.site_.settings.max_request_size
        sized = getattr(target, "max_body_size", None)
        if sized is not None and sized(method) is not None:
            limit = sized(method)
        self._limit = limit
        if length is not None and length > limit:
            self.refuse_now(413, f"the body may have at most {limit} bytes")
            return
        early = getattr(target, "refuse_early", None)
        problem = early(self, method, path) if early is not None else None
        if problem is not None:
            self.refuse_now(*problem)
            return
        make = getattr(target, "content_file", None)
        content = make(method, path, length) if make is not None else None
        if content is None:
            super().gotLength(length)
        else:
            self.content = content
            self._temp_path = content.name

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's API
        """Write a chunk of the body, unless it goes beyond the limit."""
        if self._refused:
            return
        self._received += len(data)
        if self._limit is not None and self._received > self._limit:
            self.refuse_now(413, f"the body may have at most {self._limit} bytes")
            return
        super().handleContentChunk(data)

    def refuse_now(self, code: int, reason: str,
                   headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer before the body was read, then close the connection.

        What of the body still arrives is dropped, and the request is never
        rendered.
        """
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after this
        self._discard_temp()
        self.content = io.BytesIO()
        body = (reason + "\n").encode()
        head = [b"HTTP/1.1 %d %s" % (code, _REASONS.get(code, b"Error")),
                b"Content-Type: text/plain; charset=utf-8",
                b"Content-Length: %d" % len(body),
                b"Access-Control-Allow-Origin: *",
                b"Connection: close"]
        head += [name + b": " + value for name, value in headers]
        transport = self.channel.transport
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        transport.loseConnection()
        method, path, _ = self._target()
        access_log.info('{ip} "{method} {path}" {code} refused before the body: {reason}',
                        ip=self.client_ip(), method=method.decode("latin-1"),
                        path=path.decode("latin-1")[:200], code=code, reason=reason)

    def process(self) -> None:
        """Render (nothing for a request refused early)."""
        if self._refused:
            return
        super().process()

    # -- addresses behind proxies ----------------------------------------------

    def peer_ip(self) -> str:
        """The address of the connection's other end."""
        peer = self.channel.transport.getPeer() if self.channel is not None else None
        return getattr(peer, "host", "") or ""

    def _trusted(self, address: str) -> bool:
        return self.site_.trusts(address)

    def client_ip(self) -> str:
        """The client's address: the connection's, or forwarded by a trusted proxy.

        ``X-Forwarded-For`` is read from the right: the first address that
        is not itself a trusted proxy is the client.
        """
        peer = self.peer_ip()
        if not self._trusted(peer):
            return peer
        forwarded = self.requestHeaders.getRawHeaders(b"x-forwarded-for")
        if not forwarded:
            return peer
        hops = [h.strip() for h in b",".join(forwarded).decode("latin-1").split(",")]
        for hop in reversed(hops):
            if _ip(hop) is None:
                return peer  # garbage: do not trust any of it
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer

    def is_secure_origin(self) -> bool:
        """True over TLS, or over plain HTTP from loopback or a trusted proxy.

        A trusted proxy saying ``X-Forwarded-Proto: http`` makes it False:
        the client's own hop was not encrypted. Transports that take
        credentials over HTTP accept them only when this is True.
        """
        if self.isSecure():
            return True
        if not self._trusted(self.peer_ip()):
            return False
        proto = self.getHeader(b"x-forwarded-proto")
        return proto is None or proto.strip().lower() == b"https"

    # -- temp files ----------------------------------------------------------------

    def _discard_temp(self) -> None:
        path, self._temp_path = self._temp_path, None
        if path is None:
            return
        try:
            self.content.close()
        except Exception:
            pass
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warn("cannot delete the temporary file {path}: {error}", path=path, error=e)

    def finish(self) -> Any:
        """End the response; a body file the resource did not keep goes."""
        try:
            return super().finish()
        finally:
            self._discard_temp()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted's API
        """The connection went away (mid-body too): the body file goes."""
        self._discard_temp()
        super().connectionLost(reason)


class HTTPSite(server.Site):
    """One listener's site: the shared resource tree, limits and the access log."""

    requestFactory = HTTPRequest

    def __init__(self, http_service: HTTPService, reactor: Any):
        super().__init__(http_service.root, timeout=http_service.settings.timeout,
                         reactor=reactor)
        self.service = http_service
        self.displayTracebacks = False

    @property
    def settings(self) -> Any:
        """The ``[http]`` settings."""
        return self.service.settings

    def trusts(self, address: str) -> bool:
        """Whether forwarded headers from this address count."""
        return self.service.trusts(address)

    def allow(self, address: str) -> bool:
        """Spend one request of the address's rate; False when it is used up."""
        return self.service.allow(address)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's API
        """A connection's channel, remembered so that a shutdown can close it."""
        channel = super().buildProtocol(addr)
        self.service.connections.add(channel)
        return channel

    def log(self, request: HTTPRequest) -> None:
        """One access log line per request."""
        agent = request.getHeader(b"user-agent") or b"-"
        access_log.info(
            '{ip} "{method} {path} {version}" {code} {length} "{agent}"',
            ip=request.client_ip(), method=request.method.decode("latin-1"),
            path=request.uri.decode("latin-1")[:200],
            version=request.clientproto.decode("latin-1"), code=request.code,
            length=request.sentLength, agent=agent.decode("latin-1")[:200],
        )


class _CurrentTLS:
    """The server's current TLS context (a reload changes it for new connections)."""

    def __init__(self, options: Callable[[], Any]):
        self._options = options

    def getContext(self) -> Any:  # noqa: N802 - pyOpenSSL's API
        """The current options' context."""
        return self._options().getContext()


class HTTPService(service.Service):
    """The resource tree, mounts, alt-connection links and the listeners' factories.

    ``external_url`` is the base URL handed out (ends with ``/``); when
    ``[http] external_url`` is empty, :meth:`listening_on` derives it from
    the bound ports.
    """

    def __init__(self, settings: Any, domain: str, reactor: Any = None):
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.domain = domain
        self.reactor = reactor
        self.root = Folder()
        self._mounts: dict[tuple[bytes, ...], resource.Resource] = {}
        #: XEP-0156 links: (rel, path below external_url); host-meta lists them.
        self.links: list[tuple[str, str]] = []
        self.external_url = settings.external_url or f"http://{domain}:5280/"
        self._networks = [ipaddress.ip_network(p, strict=False)
                          for p in settings.trusted_proxies]
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        #: Open connections' channels (weakly: a closed one just goes).
        self.connections: weakref.WeakSet = weakref.WeakSet()

    def stopService(self) -> None:  # noqa: N802 - Twisted's API
        """Close the connections still open (idle keep-alive ones included)."""
        for channel in list(self.connections):
            # twisted.web's protocol is a wrapper that picks HTTP/1.1 or
            # HTTP/2; the channel inside has the transport.
            transport = getattr(getattr(channel, "_channel", channel), "transport", None)
            if transport is not None:
                transport.loseConnection()
        super().stopService()

    # -- the seam --------------------------------------------------------------------

    def mount(self, path: str, target: resource.Resource) -> None:
        """Serve ``target`` at ``path`` (``/upload``, ``/.well-known/host-meta``).

        Everything below the path goes to the resource too (its ``getChild``
        or ``isLeaf``). Mounting a path twice is an error.
        """
        segments = tuple(s.encode() for s in path.strip("/").split("/"))
        if not segments or segments == (b"",) or segments in self._mounts:
            raise ValueError(f"cannot mount at {path!r}")
        node: resource.Resource = self.root
        for segment in segments[:-1]:
            child = node.children.get(segment)
            if child is None:
                child = Folder()
                node.putChild(segment, child)
            node = child
        node.putChild(segments[-1], target)
        self._mounts[segments] = target

    def resource_for(self, path: bytes) -> resource.Resource | None:
        """The mounted resource that serves a request path, or None."""
        segments = tuple(s for s in path.split(b"/") if s)
        for length in range(len(segments), 0, -1):
            found = self._mounts.get(segments[:length])
            if found is not None:
                return found
        return None

    def add_link(self, rel: str, path: str) -> None:
        """Announce an alternative connection method (XEP-0156) at a mounted path."""
        self.links.append((rel, path))

    def url_for(self, path: str, websocket: bool = False) -> str:
        """The external URL of a path (``ws``/``wss`` for a WebSocket)."""
        url = self.external_url + path.lstrip("/")
        if websocket:
            parts = urlsplit(url)
            url = urlunsplit(parts._replace(scheme="wss" if parts.scheme == "https" else "ws"))
        return url

    # -- listeners -------------------------------------------------------------------

    def factory(self) -> HTTPSite:
        """The plain HTTP listener's factory."""
        return HTTPSite(self, self.reactor)

    def tls_factory(self, options: Callable[[], Any]) -> TLSMemoryBIOFactory:
        """The HTTPS listener's factory; ``options()`` gives the current TLS options."""
        return TLSMemoryBIOFactory(_CurrentTLS(options), False, HTTPSite(self, self.reactor))

    def listening_on(self, plain_port: int | None, tls_port: int | None) -> None:
        """Derive ``external_url`` from the bound ports unless it is configured."""
        if self.settings.external_url:
            return
        if tls_port is not None:
            self.external_url = f"https://{self.domain}:{tls_port}/"
        elif plain_port is not None:
            self.external_url = f"http://{self.domain}:{plain_port}/"

    # -- proxies and rates -------------------------------------------------------------

    def trusts(self, address: str) -> bool:
        """Loopback and ``[http] trusted_proxies``."""
        ip = _ip(address)
        if ip is None:
            return False
        if getattr(ip, "ipv4_mapped", None) is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback or any(ip in network for network in self._networks)

    def allow(self, address: str) -> bool:
        """Spend one request of an address's bucket (``request_rate``, ``request_burst``)."""
        rate = self.settings.request_rate
        if rate <= 0:
            return True
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = TokenBucket(rate, self.settings.request_burst, self.reactor)
            self._buckets[address] = bucket
            if len(self._buckets) > MAX_TRACKED_ADDRESSES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket.take()


def status_body(request: server.Request, code: int, text: str) -> bytes:
    """Set a plain-text error status; the body to return."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (text + "\n").encode()


