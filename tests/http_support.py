"""Test helpers for the HTTP listener: a raw HTTP/1.1 exchange and an Agent request."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.web import client
from twisted.web.http_headers import Headers


class _RawClient(protocol.Protocol):
    def __init__(self, data: bytes):
        self.data = data
        self.received = b""
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self):  # noqa: N802
        self.transport.write(self.data)

    def dataReceived(self, data):  # noqa: N802
        self.received += data

    def connectionLost(self, reason):  # noqa: N802
        self.done.callback(self.received)


@defer.inlineCallbacks
def raw_http(port: int, data: bytes, host: str = "127.0.0.1"):
    """Send raw bytes to the listener; fires with everything it sent until it closed."""
    client_protocol = _RawClient(data)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port)
    yield endpoints.connectProtocol(endpoint, client_protocol)
    return (yield client_protocol.done)


@dataclass
class Reply:
    """An HTTP response: status code, headers and body."""

    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """One header's value (the first), or None."""
        values = self.headers.getRawHeaders(name.encode())
        return values[0].decode("latin-1") if values else None


@defer.inlineCallbacks
def request(method: str, url: str, headers: dict[str, str] | None = None,
            body: bytes | None = None):
    """One request with twisted.web's Agent (no persistent connections): a :class:`Reply`."""
    agent = client.Agent(reactor, pool=client.HTTPConnectionPool(reactor, persistent=False))
    raw = Headers({k: [v] for k, v in (headers or {}).items()})
    producer = client.FileBodyProducer(__import__("io").BytesIO(body)) if body is not None \
        else None
    response = yield agent.request(method.encode(), url.encode(), raw, producer)
    data = yield client.readBody(response)
    return Reply(response.code, response.headers, data)
