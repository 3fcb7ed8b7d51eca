"""A hostile XMPP client: the attacks a server's client port must withstand.

Used by the hardening tests (``tests/test_hardening.py``) and by the
benchmark ``benchmarks/hostile.py``; it only ever talks to the host and port
it is given. Every attack opens its own connection and reports which stream
error (or SASL failure) the server answered with:

* :data:`ATTACKS` — input attacks: oversized stanzas and tags, deep nesting,
  too many attributes or elements, restricted XML (DOCTYPE, entities,
  comments, processing instructions), invalid UTF-8 and XML-illegal
  characters, malformed XML, and a fast flood of whitespace. Each names the
  stream error conditions that are a correct answer. Size attacks send until
  the server closes (up to ``max_bytes``), so they work whatever the
  server's limits are.
* :func:`flood_connections` — open connections until the server refuses one.
* :func:`guess_passwords` — failed SASL PLAIN attempts on fresh connections
  until the server answers ``temporary-auth-failure``.
* :func:`stall` — open a stream and go silent until the server times out.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, protocol, ssl, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.words.xish import domish

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"


def stream_header(domain: str) -> bytes:
    """A correct client stream header for ``domain``."""
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='{NS_STREAMS}' to='{domain}' version='1.0'>"
    ).encode()


@dataclass(frozen=True)
class Attack:
    """One hostile input: bytes to send and the stream errors that answer it."""

    name: str
    expected: tuple[str, ...]
    chunks: Callable[[], Iterator[bytes]]
    #: Send a correct stream header first.
    header: bool = True


def _forever(first: bytes, repeat: bytes) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        yield first
        block = repeat * max(1, 16384 // len(repeat))
        while True:
            yield block

    return chunks


def _once(*parts: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter(parts)


_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        f"<!ENTITY lol{i} '{('&lol' + str(i - 1 if i > 1 else '') + ';') * 10}'>".encode()
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)

ATTACKS: tuple[Attack, ...] = (
    Attack("oversized stanza", ("policy-violation",), _forever(b"<message><body>", b"x")),
    Attack(
        "never-ending attribute value", ("policy-violation",), _forever(b"<message to='", b"a")
    ),
    Attack("never-ending start tag", ("policy-violation",), _forever(b"<message", b" a='b'")),
    Attack(
        "never-ending stream header",
        ("policy-violation",),
        _forever(b"<?xml version='1.0'?><stream:stream x='", b"y"),
        header=False,
    ),
    Attack("deep nesting", ("policy-violation",), _forever(b"<message>", b"<a>")),
    Attack(
        "too many attributes",
        ("policy-violation",),
        _once(b"<message " + b" ".join(b"a%d='x'" % i for i in range(1000)) + b"/>"),
    ),
    Attack(
        "too many namespace declarations",
        ("policy-violation",),
        _once(b"<message " + b" ".join(b"xmlns:p%d='u%d'" % (i, i) for i in range(1000)) + b"/>"),
    ),
    Attack("too many elements", ("policy-violation",), _once(b"<message>" + b"<a/>" * 20000)),
    Attack("entity expansion (billion laughs)", ("restricted-xml",), _once(_LAUGHS), header=False),
    Attack(
        "external entity",
        ("restricted-xml",),
        _once(b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"),
        header=False,
    ),
    Attack("undefined entity reference", ("restricted-xml",), _once(b"<message>&e;</message>")),
    Attack("comment", ("restricted-xml",), _once(b"<!-- hello -->")),
    Attack("processing instruction", ("restricted-xml",), _once(b"<?php echo 1; ?>")),
    Attack(
        "invalid UTF-8", ("not-well-formed",), _once(b"<message><body>\xff\xfe</body></message>")
    ),
    Attack(
        "overlong UTF-8", ("not-well-formed",), _once(b"<message><body>\xc0\xaf</body></message>")
    ),
    Attack(
        "control character", ("not-well-formed",), _once(b"<message><body>\x01</body></message>")
    ),
    Attack(
        "illegal character reference",
        ("not-well-formed",),
        _once(b"<message><body>&#0;</body></message>"),
    ),
    Attack("unbalanced tags", ("not-well-formed",), _once(b"<message><body></message>")),
    Attack("garbage before the header", ("not-well-formed",), _once(b"\x16\x03\x01\x02"), False),
    Attack(
        "stanza before authentication",
        ("not-authorized",),
        _once(b"<message to='someone@localhost'><body>spam</body></message>"),
    ),
)

#: Not an error: a fast flood of whitespace keepalives must be slowed, not
#: dropped; the server answers nothing and keeps the stream open.
WHITESPACE_FLOOD_BYTES = 1024 * 1024


@dataclass
class AttackResult:
    """What the server answered to one attack."""

    name: str
    expected: tuple[str, ...]
    condition: str | None = None
    sasl_failures: list[str] = field(default_factory=list)
    closed: bool = False
    sent: int = 0

    @property
    def ok(self) -> bool:
        """The server answered with one of the expected conditions."""
        return self.condition in self.expected


class AttackClient(protocol.Protocol):
    """Writes raw bytes; parses what the server sends for errors and failures."""

    def __init__(self) -> None:
        self.condition: str | None = None
        self.sasl_failures: list[str] = []
        self.header_received = False
        self.elements: list[domish.Element] = []
        self.closed: defer.Deferred = defer.Deferred()
        self.lost = False
        self._waiting: list[defer.Deferred] = []
        self._parser: Any = None
        self.reset()

    def reset(self) -> None:
        """Expect a new server stream (after a stream restart)."""
        self._parser = domish.elementStream()
        self._parser.DocumentStartEvent = self._on_header
        self._parser.ElementEvent = self._on_element
        self._parser.DocumentEndEvent = lambda: None

    def _on_header(self, root: domish.Element) -> None:
        self.header_received = True
        self._wake()

    def _on_element(self, element: domish.Element) -> None:
        if element.uri == NS_STREAMS and element.name == "error":
            for child in element.elements():
                if child.uri == NS_STREAM_ERRORS and child.name != "text":
                    self.condition = child.name
                    break
        elif element.uri == NS_SASL and element.name in ("failure", "success"):
            if element.name == "success":
                self.sasl_failures.append("success")
            for child in element.elements():
                if child.name != "text":
                    self.sasl_failures.append(child.name)
                    break
        self.elements.append(element)
        self._wake()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:  # (a timeout may have fired it already)
                d.callback(None)

    def dataReceived(self, data: bytes) -> None:
        """Parse the server's output (a broken server stream is just noted)."""
        try:
            self._parser.parse(data)
        except Exception:
            self.condition = self.condition or "(unparsable server output)"

    def connectionLost(self, reason: Any = None) -> None:
        """Remember that the server closed the connection."""
        self.lost = True
        self._wake()
        self.closed.callback(None)

    def write(self, data: bytes) -> None:
        """Send raw bytes."""
        if not self.lost:
            self.transport.write(data)

    def wait_event(self, reactor: Any, timeout: float) -> defer.Deferred:
        """Fire on the next element, header or close (or after ``timeout``)."""
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return _with_timeout(d, reactor, timeout)

    @defer.inlineCallbacks
    def wait_until(self, reactor: Any, condition: Callable[[], bool], timeout: float):
        """Wait until ``condition()`` holds or the connection is lost (or timeout)."""
        deadline = reactor.seconds() + timeout
        while not condition() and not self.lost:
            remaining = deadline - reactor.seconds()
            if remaining <= 0:
                break
            yield self.wait_event(reactor, remaining)

    @defer.inlineCallbacks
    def open_stream(self, reactor: Any, domain: str, timeout: float, use_tls: bool = True):
        """Send a header, wait for the features; negotiate STARTTLS when offered.

        The server certificate is not checked (this client attacks, it does
        not trust). Fires with the last features element (or None).
        """
        self.elements.clear()
        self.write(stream_header(domain))
        yield self.wait_until(reactor, lambda: bool(self.elements), timeout)
        features = self.elements[0] if self.elements else None
        if features is None or features.name != "features" or not use_tls:
            return features
        if not any(child.uri == NS_TLS for child in features.elements()):
            return features
        self.elements.clear()
        self.write(f"<starttls xmlns='{NS_TLS}'/>".encode())
        yield self.wait_until(reactor, lambda: bool(self.elements), timeout)
        if not self.elements or self.elements[0].name != "proceed":
            return None
        self.transport.startTLS(ssl.CertificateOptions())
        self.reset()
        self.elements.clear()
        self.write(stream_header(domain))
        yield self.wait_until(reactor, lambda: bool(self.elements), timeout)
        return self.elements[0] if self.elements else None

    def abort(self) -> None:
        """Drop the connection at once."""
        if not self.lost and self.transport is not None:
            self.transport.abortConnection()


def _with_timeout(d: defer.Deferred, reactor: Any, timeout: float) -> defer.Deferred:
    """``d``, firing with None after ``timeout`` seconds if nothing else fired it."""
    call = reactor.callLater(timeout, lambda: d.called or d.callback(None))
    d.addBoth(lambda result: (call.active() and call.cancel(), result)[1])
    return d


@defer.inlineCallbacks
def connect(reactor: Any, host: str, port: int, timeout: float = 10.0):
    """A connected :class:`AttackClient`."""
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    client = yield connectProtocol(endpoint, AttackClient())
    return client


@defer.inlineCallbacks
def wait_closed(reactor: Any, client: AttackClient, timeout: float):
    """Wait until the server closes ``client``; abort it after ``timeout``."""
    if not client.lost:
        yield _with_timeout(_chain(client.closed), reactor, timeout)
    if not client.lost:
        client.abort()
        yield client.closed


def _chain(d: defer.Deferred) -> defer.Deferred:
    out: defer.Deferred = defer.Deferred()
    d.addBoth(lambda result: (out.called or out.callback(None), result)[1])
    return out


@defer.inlineCallbacks
def run_attack(
    reactor: Any,
    host: str,
    port: int,
    domain: str,
    attack: Attack,
    max_bytes: int = 4 * 1024 * 1024,
    timeout: float = 10.0,
):
    """Send one attack on a fresh connection; fire with an :class:`AttackResult`."""
    result = AttackResult(attack.name, attack.expected)
    client = yield connect(reactor, host, port, timeout)
    if attack.header:
        client.write(stream_header(domain))
    for chunk in attack.chunks():
        if client.lost or client.condition or result.sent >= max_bytes:
            break
        client.write(chunk)
        result.sent += len(chunk)
        # Let the reactor move the bytes (and read the server's answer).
        yield task.deferLater(reactor, 0, lambda: None)
    yield wait_closed(reactor, client, timeout)
    result.condition = client.condition
    result.sasl_failures = client.sasl_failures
    result.closed = client.lost
    return result


@defer.inlineCallbacks
def whitespace_flood(
    reactor: Any,
    host: str,
    port: int,
    domain: str,
    size: int = WHITESPACE_FLOOD_BYTES,
    timeout: float = 30.0,
):
    """Send ``size`` bytes of whitespace as fast as possible, then a ping-like probe.

    Fires with an :class:`AttackResult` whose ``condition`` is
    ``"not-authorized"`` when the server read every byte and answered the
    stanza sent after them (a pre-auth stanza: the answer proves delivery),
    or whatever stream error it sent instead.
    """
    result = AttackResult("whitespace flood", ("not-authorized",))
    client = yield connect(reactor, host, port, timeout)
    client.write(stream_header(domain))
    block = b" " * 65536
    while result.sent < size and not client.lost:
        client.write(block)
        result.sent += len(block)
        yield task.deferLater(reactor, 0, lambda: None)
    client.write(b"<presence/>")
    yield wait_closed(reactor, client, timeout)
    result.condition = client.condition
    result.closed = client.lost
    return result


@defer.inlineCallbacks
def flood_connections(
    reactor: Any, host: str, port: int, domain: str, limit: int = 200, timeout: float = 10.0
):
    """Open up to ``limit`` connections until one is refused.

    Fires with an :class:`AttackResult` ("connection flood"): ``condition``
    is the refusal's stream error (None if none was refused) and ``sent`` the
    number of connections opened. All connections are closed afterwards.
    """
    result = AttackResult("connection flood", ("policy-violation",))
    clients: list[AttackClient] = []
    try:
        for _ in range(limit):
            client = yield connect(reactor, host, port, timeout)
            clients.append(client)
            result.sent += 1
            client.write(stream_header(domain))
            yield client.wait_until(reactor, lambda c=client: bool(c.elements), timeout)
            if client.condition:
                result.condition = client.condition
                yield wait_closed(reactor, client, timeout)
                result.closed = client.lost
                break
    finally:
        for client in clients:
            client.abort()
        for client in clients:
            yield client.closed
    return result


@defer.inlineCallbacks
def guess_passwords(
    reactor: Any,
    host: str,
    port: int,
    domain: str,
    username: str,
    attempts: int = 20,
    timeout: float = 10.0,
):
    """Try wrong PLAIN passwords on fresh connections until the server backs off.

    Negotiates STARTTLS when the server offers it. Fires with an
    :class:`AttackResult` ("password guessing") whose ``sasl_failures`` lists
    every answer and ``condition`` is ``temporary-auth-failure`` once seen.
    """
    result = AttackResult("password guessing", ("temporary-auth-failure",))
    for attempt in range(attempts):
        client = yield connect(reactor, host, port, timeout)
        yield client.open_stream(reactor, domain, timeout)
        wrong = f"wrong-{attempt}"
        payload = base64.b64encode(f"\0{username}\0{wrong}".encode()).decode()
        client.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>".encode())
        result.sent += 1
        yield client.wait_until(reactor, lambda c=client: bool(c.sasl_failures), timeout)
        result.sasl_failures.extend(client.sasl_failures)
        client.write(b"</stream:stream>")
        yield wait_closed(reactor, client, timeout)
        if "temporary-auth-failure" in client.sasl_failures:
            result.condition = "temporary-auth-failure"
            break
    return result


@defer.inlineCallbacks
def stall(reactor: Any, host: str, port: int, domain: str, timeout: float):
    """Open a stream, then say nothing; fire with the server's stream error."""
    result = AttackResult("silent connection", ("connection-timeout",))
    client = yield connect(reactor, host, port, timeout)
    client.write(stream_header(domain))
    result.sent = 1
    yield wait_closed(reactor, client, timeout)
    result.condition = client.condition
    result.closed = client.lost
    return result


def mutations(seed: bytes, count: int, rng: Any) -> Iterator[bytes]:
    """``count`` random mutations of ``seed`` (bytes flipped, cut, repeated)."""
    for _ in itertools.repeat(None, count):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            if not data:
                break
            i = rng.randrange(len(data))
            choice = rng.randrange(4)
            if choice == 0:
                data[i] = rng.randrange(256)
            elif choice == 1:
                del data[i : i + rng.randint(1, 16)]
            elif choice == 2:
                data[i:i] = data[i : i + rng.randint(1, 64)] * rng.randint(1, 50)
            else:
                data[i:i] = rng.choice([b"<", b">", b"&", b"'", b"\x00", b"<!--", b"<?", b"]]>"])
        yield bytes(data)
