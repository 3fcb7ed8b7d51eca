"""A minimal XMPP client for load generation: bytes in, bytes out, no XML parser.

The handshake (stream header, optional STARTTLS, in-band registration, SASL
PLAIN or SCRAM-SHA-256/SHA-1 (:mod:`benchscram`), resource binding, optional
session, initial presence) waits for byte patterns in what the server sends.
STARTTLS upgrades the asyncio transport in place (``loop.start_tls``) and
verifies no certificate: the servers under test use self-signed ones. Once a
connection is set up it switches to counting mode: every chunk the server
sends is scanned with one regular expression for
``<body>TIMESTAMP:SENDER</body>`` and the matches are handed to a callback.
Nothing is parsed, so the generator costs far less per stanza than any
server.

Outgoing stanzas are pre-serialised byte templates; only the timestamp
(``time.monotonic_ns()``, generator and receiver are the same process) and
the sender number are filled in.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Callable
from typing import Any

from benchscram import ScramClient, ScramError

STREAM_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>"
)
STREAM_END = b"</stream:stream>"
FEATURES = re.compile(rb"<(?:stream:)?features\b.*?</(?:stream:)?features>", re.S)
SASL_OUTCOME = re.compile(rb"<(success|failure)\b[^>]*?(?:/>|>.*?</\1>)", re.S)
STREAM_ERROR = re.compile(rb"<stream:error\b.*?</stream:error>", re.S)
SELF_PRESENCE = re.compile(rb"code=['\"]110['\"]")
BODY = re.compile(rb"<body>(\d+):(\d+)</body>")
SM_ENABLED = re.compile(rb"<enabled\b[^>]*>")
TLS_OUTCOME = re.compile(rb"<(proceed|failure)\b[^>]*?(?:/>|>.*?</\1>)", re.S)
SASL_STEP = re.compile(rb"<(success|failure|challenge)\b[^>]*?(?:/>|>(.*?)</\1>)", re.S)
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STEP_TIMEOUT = 120.0

NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = b"urn:ietf:params:xml:ns:xmpp-session"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"


class HandshakeError(Exception):
    """The server did not answer a set-up step as expected."""


def client_tls_context() -> ssl.SSLContext:
    """TLS without certificate or host name checks (self-signed test servers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS_CONTEXT: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """One shared client context for the whole generator (cheaper than one per connection)."""
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        _TLS_CONTEXT = client_tls_context()
    return _TLS_CONTEXT


def iq_reply_pattern(iq_id: str) -> re.Pattern[bytes]:
    """A pattern for the complete iq (result or error) answering ``iq_id``."""
    quoted = re.escape(iq_id.encode())
    return re.compile(
        rb"<iq\b[^>]*\bid=['\"]" + quoted + rb"['\"][^>]*?(?:/>|>.*?</iq>)", re.S
    )


def is_result(iq: bytes) -> bool:
    """True when an iq's start tag says type='result'."""
    head = iq[: iq.find(b">") + 1]
    return b"type='result'" in head or b'type="result"' in head


BodyCallback = Callable[["BenchConnection", list[tuple[bytes, bytes]]], None]
ErrorCallback = Callable[["BenchConnection", int], None]
RegionCallback = Callable[["BenchConnection", bytes], None]


class BenchConnection(asyncio.Protocol):
    """One client connection: a pattern-waiting handshake, then body counting."""

    def __init__(self, domain: str, tls: bool = False, sasl: str = "plain"):
        self.domain = domain
        #: STARTTLS before anything else; the SASL mechanism ("plain" or
        #: "scram-sha-256" / "scram-sha-1").
        self.tls = tls
        self.sasl = sasl
        self.encrypted = False
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self._waiter: tuple[re.Pattern[bytes], asyncio.Future] | None = None
        self.counting = False
        self.on_bodies: BodyCallback | None = None
        self.on_errors: ErrorCallback | None = None
        self.on_region: RegionCallback | None = None
        self._tail = b""
        self.lost = False
        self.lost_expected = False
        self.stream_errors: list[bytes] = []
        self.jid = ""
        self.tag: Any = None  # free slot for the workload (sender state, ...)
        #: Stream management (XEP-0198): on, stanzas counted since enabling,
        #: and whether the server's <r/> is answered (an idle client never).
        self.sm = False
        self.sm_handled = 0
        self.sm_answer = True

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Handshake: buffer and wake the waiter. Counting: scan for bodies."""
        if b"<stream:error" in data:
            self._note_stream_error(data)
        if self.sm:
            self._sm_count(data)
        if not self.counting:
            self.buffer += data
            self._check_waiter()
            return
        if b"type='error'" in data or b'type="error"' in data:
            count = data.count(b"type='error'") + data.count(b'type="error"')
            if self.on_errors is not None:
                self.on_errors(self, count)
        if self.on_region is not None:
            self._scan_tags(data)
        else:
            self._scan(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail a pending wait; count the loss unless we closed on purpose."""
        self.lost = True
        if self._waiter is not None:
            _, future = self._waiter
            self._waiter = None
            if not future.done():
                future.set_exception(HandshakeError(f"connection lost: {self._last_error()}"))

    # -- stream management ---------------------------------------------------------

    async def enable_sm(self, answer: bool = True) -> None:
        """Enable XEP-0198 with resumption; count stanzas, answer <r/> if ``answer``."""
        self.sm_answer = answer
        self.write(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        await self.expect(SM_ENABLED, "sm enabled")
        self.buffer = bytearray()
        self.sm = True
        self.sm_handled = 0

    def _sm_count(self, data: bytes) -> None:
        # Stanza starts in this chunk (a tag name cut by a chunk border is
        # missed: the client then acknowledges a little less, which is
        # allowed and only keeps a stanza in the server's queue longer).
        self.sm_handled += data.count(b"<message") + data.count(b"<presence") + \
            data.count(b"<iq")
        if self.sm_answer and b"<r xmlns='urn:xmpp:sm:3'/>" in data:
            self.write(b"<a xmlns='urn:xmpp:sm:3' h='%d'/>" % self.sm_handled)

    # -- counting mode -----------------------------------------------------------

    def start_counting(
        self, on_bodies: BodyCallback, on_errors: ErrorCallback | None = None
    ) -> None:
        """Switch to counting mode (the buffered remainder is scanned too).

        ``on_bodies`` gets the (timestamp, sender) pairs of each chunk,
        ``on_errors`` the number of ``type='error'`` stanzas in it.
        """
        self.on_bodies = on_bodies
        self.on_errors = on_errors
        self.counting = True
        rest = bytes(self.buffer)
        self.buffer = bytearray()
        if rest:
            self._scan(rest)

    def start_tag_counting(
        self, on_region: RegionCallback, on_errors: ErrorCallback | None = None
    ) -> None:
        """Counting mode for what lies within tags (attributes) rather than text.

        Each chunk is cut after its last complete tag (the rest waits for the
        next chunk) and handed to ``on_region``, so no tag straddles two calls.
        """
        self.on_region = on_region
        self.on_errors = on_errors
        self.counting = True
        rest = bytes(self.buffer)
        self.buffer = bytearray()
        if rest:
            self._scan_tags(rest)

    def _scan_tags(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        cut = data.rfind(b"<")
        if cut >= 0 and data.find(b">", cut) < 0:
            self._tail = data[cut:]
        else:
            self._tail = b""
            cut = len(data)
        if cut:
            self.on_region(self, data[:cut] if cut < len(data) else data)  # type: ignore[misc]

    def _scan(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        end = data.rfind(b"</body>")
        if end >= 0:
            end += 7
            matches = BODY.findall(data, 0, end)
            if matches and self.on_bodies is not None:
                self.on_bodies(self, matches)
            rest = data[end:]
        else:
            rest = data
        start = rest.rfind(b"<body>")
        self._tail = rest[start:] if start >= 0 else rest[-6:]

    def _note_stream_error(self, data: bytes) -> None:
        found = STREAM_ERROR.search(data)
        self.stream_errors.append(found.group(0)[:300] if found else data[:300])

    def _last_error(self) -> str:
        if self.stream_errors:
            return self.stream_errors[-1].decode(errors="replace")
        return "no stream error"

    # -- handshake ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes (dropped once the connection is gone)."""
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    def _check_waiter(self) -> None:
        if self._waiter is None:
            return
        pattern, future = self._waiter
        found = pattern.search(self.buffer)
        if found is None:
            return
        self._waiter = None
        matched = bytes(found.group(0))
        del self.buffer[: found.end()]
        if not future.done():
            future.set_result(matched)

    async def expect(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        """Wait until ``pattern`` is in the input; return the match and consume it."""
        if self.lost:
            raise HandshakeError(f"connection lost before {what}: {self._last_error()}")
        future = asyncio.get_running_loop().create_future()
        self._waiter = (pattern, future)
        self._check_waiter()
        try:
            return await asyncio.wait_for(future, STEP_TIMEOUT)
        except TimeoutError:
            self._waiter = None
            raise HandshakeError(f"timed out waiting for {what}") from None

    async def open_stream(self) -> bytes:
        """Send a stream header and return the stream features (after STARTTLS if wanted)."""
        self.write(STREAM_HEADER % self.domain.encode())
        features = await self.expect(FEATURES, "stream features")
        if self.tls and not self.encrypted:
            await self.starttls(features)
            self.write(STREAM_HEADER % self.domain.encode())
            features = await self.expect(FEATURES, "stream features after STARTTLS")
        return features

    async def starttls(self, features: bytes) -> None:
        """STARTTLS (RFC 6120 section 5): ``<proceed/>``, then the TLS handshake in place."""
        if NS_TLS.encode() not in features:
            raise HandshakeError(f"the server offers no STARTTLS: {features[:300]!r}")
        self.write(f"<starttls xmlns='{NS_TLS}'/>".encode())
        outcome = await self.expect(TLS_OUTCOME, "STARTTLS proceed")
        if not outcome.startswith(b"<proceed"):
            raise HandshakeError(f"STARTTLS refused: {outcome[:200]!r}")
        self.buffer = bytearray()
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(self.transport, self, tls_context(),  # type: ignore[arg-type]
                               server_hostname=self.domain),
                STEP_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as e:
            raise HandshakeError(f"TLS handshake failed: {type(e).__name__}: {e}") from None
        if transport is None:
            raise HandshakeError("TLS handshake: connection closed")
        self.transport = transport  # type: ignore[assignment]
        self.encrypted = True

    async def iq(self, iq_id: str, stanza: bytes) -> bytes:
        """Send an iq and wait for its answer (the whole iq element)."""
        self.write(stanza)
        return await self.expect(iq_reply_pattern(iq_id), f"iq {iq_id}")

    async def register(self, username: str, password: str) -> bool:
        """XEP-0077 before authentication; False when the account exists."""
        await self.open_stream()
        answer = await self.iq(
            "reg",
            (
                "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
                f"<username>{username}</username><password>{password}</password>"
                "</query></iq>"
            ).encode(),
        )
        if is_result(answer):
            return True
        if b"<conflict" in answer:
            return False
        raise HandshakeError(f"registration of {username} refused: {answer[:300]!r}")

    async def login(
        self, username: str, password: str, resource: str, presence: bool = True
    ) -> None:
        """STARTTLS if wanted, SASL, bind (and session when required), initial presence."""
        features = await self.open_stream()
        await self.authenticate(username, password, features)
        features = await self.open_stream()
        answer = await self.iq(
            "bind",
            (
                f"<iq type='set' id='bind'><bind xmlns='{NS_BIND}'>"
                f"<resource>{resource}</resource></bind></iq>"
            ).encode(),
        )
        if not is_result(answer):
            raise HandshakeError(f"bind of {username} refused: {answer[:300]!r}")
        found = re.search(rb"<jid>([^<]+)</jid>", answer)
        self.jid = found.group(1).decode() if found else f"{username}@{self.domain}/{resource}"
        session_at = features.find(NS_SESSION)
        if session_at >= 0 and b"<optional" not in features[session_at:]:
            answer = await self.iq(
                "sess",
                b"<iq type='set' id='sess'><session xmlns='" + NS_SESSION + b"'/></iq>",
            )
            if not is_result(answer):
                raise HandshakeError(f"session of {username} refused: {answer[:300]!r}")
        if presence:
            self.write(b"<presence/>")

    async def authenticate(self, username: str, password: str, features: bytes) -> None:
        """SASL with ``self.sasl``: PLAIN (one step) or SCRAM (RFC 5802, keys cached)."""
        if self.sasl == "plain":
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            self.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>".encode())
            outcome = await self.expect(SASL_OUTCOME, "SASL outcome")
            if not outcome.startswith(b"<success"):
                raise HandshakeError(f"authentication of {username} failed: {outcome[:200]!r}")
            return
        mechanism = self.sasl.upper()
        if f">{mechanism}<".encode() not in features:
            raise HandshakeError(f"the server does not offer {mechanism}: {features[:400]!r}")
        client = ScramClient(mechanism, username, password)
        first = base64.b64encode(client.first()).decode()
        self.write(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>".encode())
        try:
            kind, data = await self._sasl_step(username)
            if kind != b"challenge":
                raise HandshakeError(f"{mechanism}: expected a challenge, got {kind!r}")
            final = base64.b64encode(client.final(data)).decode()
            self.write(f"<response xmlns='{NS_SASL}'>{final}</response>".encode())
            kind, data = await self._sasl_step(username)
            if kind == b"challenge":  # server-final as a challenge (RFC 6120 allows both)
                client.verify(data)
                self.write(f"<response xmlns='{NS_SASL}'/>".encode())
                kind, data = await self._sasl_step(username)
                if kind != b"success":
                    raise HandshakeError(f"{mechanism}: no success after the server-final")
            else:
                client.verify(data)
        except ScramError as e:
            raise HandshakeError(f"{mechanism} for {username}: {e}") from None

    async def _sasl_step(self, username: str) -> tuple[bytes, bytes]:
        """The next SASL element: (kind, decoded payload); failure raises."""
        found = await self.expect(SASL_STEP, "SASL step")
        kind = re.match(rb"<(\w+)", found).group(1)  # type: ignore[union-attr]
        if kind == b"failure":
            raise HandshakeError(f"authentication of {username} failed: {found[:200]!r}")
        inner = SASL_STEP.match(found)
        text = (inner.group(2) or b"").strip() if inner else b""
        try:
            data = base64.b64decode(text, validate=True) if text and text != b"=" else b""
        except ValueError:
            raise HandshakeError(f"bad base64 in SASL {kind!r}: {text[:100]!r}") from None
        return kind, data

    async def join_room(self, room_jid: str, nick: str) -> None:
        """Join a MUC room without history; wait for the self-presence (110)."""
        self.write(
            (
                f"<presence to='{room_jid}/{nick}'><x xmlns='{NS_MUC}'>"
                "<history maxstanzas='0'/></x></presence>"
            ).encode()
        )
        await self.expect(SELF_PRESENCE, f"self-presence in {room_jid}")

    async def configure_room(self, room_jid: str, fields: dict[str, str]) -> None:
        """Submit the owner configuration form (unlocks a new room)."""
        values = "".join(
            f"<field var='{var}'><value>{value}</value></field>" for var, value in fields.items()
        )
        answer = await self.iq(
            "cfg",
            (
                f"<iq type='set' id='cfg' to='{room_jid}'><query xmlns='{NS_MUC_OWNER}'>"
                "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
                "<value>http://jabber.org/protocol/muc#roomconfig</value></field>"
                f"{values}</x></query></iq>"
            ).encode(),
        )
        if not is_result(answer):
            raise HandshakeError(f"configuration of {room_jid} refused: {answer[:300]!r}")

    def close(self) -> None:
        """End the stream and close the socket."""
        self.lost_expected = True
        if self.transport is not None and not self.lost:
            self.transport.write(STREAM_END)
            self.transport.close()


async def connect(
    host: str, port: int, domain: str, tls: bool = False, sasl: str = "plain",
    local_host: str | None = None,
) -> BenchConnection:
    """Open a TCP connection (Nagle off) and return its protocol.

    ``tls``/``sasl`` are what its handshake will do; ``local_host`` is the
    source address (127.0.0.2, ...: more source ports for many connections).
    """
    loop = asyncio.get_running_loop()
    local = (local_host, 0) if local_host else None
    _, conn = await loop.create_connection(
        lambda: BenchConnection(domain, tls, sasl), host, port, local_addr=local
    )
    return conn
