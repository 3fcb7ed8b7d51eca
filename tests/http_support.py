"""Test helpers for the HTTP listener: a raw HTTP/1.1 exchange, an Agent request, and a
live server with accounts and a TCP client to talk to (for the WebSocket and BOSH tests)."""

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


def traffic_log(testcase) -> list[str]:
    """Turn on debug logging for the test; the stream traffic lines logged, as they come."""
    from twisted.logger import globalLogPublisher

    from xmppd import logs

    testcase.addCleanup(logs.set_level, logs.current_level())
    logs.set_level("debug")
    lines: list[str] = []

    def observe(event):
        if event.get("log_namespace") == "xmppd.traffic":
            lines.append(event["stream"] + " " + event["direction"] + ": " + event["data"])

    globalLogPublisher.addObserver(observe)
    testcase.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


class LiveServerMixin:
    """For a TestCase: a live server with an HTTP listener, alice and bob, and a TCP login."""

    @defer.inlineCallbacks
    def start(self, **sections):
        """A server (``sections`` as in start_server) with the accounts alice and bob."""
        from tests.support import start_server

        sections.setdefault("http", {"listen": "tcp:0:interface=127.0.0.1"})
        server = start_server(self, **sections)
        yield server.create_user("alice", "wonderland")
        yield server.create_user("bob", "builder")
        return server

    @defer.inlineCallbacks
    def tcp_login(self, username="bob", password="builder"):
        """A TCP client of ``self.server``, logged in with SCRAM and bound: (client, jid)."""
        from tests.test_c2s_e2e import TestClient

        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.server.port)
        client = yield endpoints.connectProtocol(endpoint, TestClient())
        self.addCleanup(lambda: client.transport.abortConnection() or client.closed)
        yield client.open_stream()
        result = yield client.scram(username, password)
        self.assertEqual(result.name, "success", result.toXml())
        yield client.open_stream()
        full = yield client.bind("tcp")
        return client, full
