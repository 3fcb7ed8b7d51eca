"""Property-based tests (hypothesis): random and mutated client streams.

Whatever bytes a client sends, in whatever pieces, the stream layer must not
let an exception out of the protocol, must not hit an unexpected-error path
(``internal-server-error``), must write a well-formed stream back, must
release every limit slot when the connection ends, and the factory must go
on accepting (and logging in) new connections. Most examples run against a
C2SStream over a StringTransport; a few run over real loopback.
"""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.words.xish import domish

import xmppd  # noqa: F401  (compat shim first)
from tests.c2s_fakes import DOMAIN, NS_BIND, NS_SASL, NS_STREAMS, Client, make_factory
from tests.support import start_server
from tests.test_hardening import HOST, TEST_LIMITS, login
from xmppd.c2s.guard import ClientGuard
from xmppd.testing import hostile

HEADER = (
    f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' "
    f"to='{DOMAIN}' version='1.0'>"
).encode()
_PLAIN = base64.b64encode(b"\0alice\0secret").decode()
LOGIN = [
    HEADER,
    f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{_PLAIN}</auth>".encode(),
    HEADER,
    f"<iq type='set' id='b'><bind xmlns='{NS_BIND}'><resource>r</resource></bind></iq>".encode(),
]
STANZAS = [
    f"<message to='bob@{DOMAIN}' type='chat' id='m'><body>hi &amp; bye</body></message>".encode(),
    b"<presence><show>away</show><status>\xc3\xa9t\xc3\xa9</status></presence>",
    f"<iq type='get' id='r' to='{DOMAIN}'><query xmlns='jabber:iq:roster'/></iq>".encode(),
    f"<iq type='result' id='x' to='{DOMAIN}'/>".encode(),
    b"<message><x xmlns='urn:x' a='1' b='2'><y><z/></y></x></message>",
    b"<presence type='unavailable'/>",
    b"<![CDATA[text]]>",
    b"  \n  ",
    b"</stream:stream>",
    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiYw==</auth>".encode(),
    f"<response xmlns='{NS_SASL}'>Zm9v</response>".encode(),
    f"<abort xmlns='{NS_SASL}'/>".encode(),
]
NASTY = [b"<", b">", b"&", b"'", b'"', b"\x00", b"\xff", b"<!--", b"<?", b"<!DOCTYPE x>",
         b"&lol;", b"&#0;", b"]]>", b"</", b"xmlns:a='", b"\xc3", b"\xed\xa0\x80", b"\x01"]


@st.composite
def mutated_streams(draw):
    """Stanzas, mutated a few times and cut into pieces, after a login prefix.

    The prefix (none, part or all of a correct login, one piece per step, as
    a client waits for each answer) lets the mutations reach every stream
    state; sometimes the prefix is mutated too.
    """
    prefix = LOGIN[: draw(st.sampled_from([0, 1, 2, 3, 4, 4, 4, 4]))]
    stanzas = draw(st.lists(st.sampled_from(STANZAS), max_size=8))
    if draw(st.booleans()):
        data, prefix = bytearray(b"".join(prefix + stanzas)), []
    else:
        data = bytearray(b"".join(stanzas))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["replace", "delete", "insert", "repeat"]))
        if operation == "replace" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 32))]
        elif operation == "insert":
            data[position:position] = draw(st.sampled_from(NASTY))
        else:
            piece = data[position : position + draw(st.integers(1, 24))]
            data[position:position] = piece * draw(st.integers(1, 40))
    return list(prefix) + _cut(bytes(data), draw(st.lists(st.integers(1, 512), max_size=20)))


def _cut(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks = []
    for size in sizes:
        if not data:
            break
        chunks.append(data[:size])
        data = data[size:]
    if data:
        chunks.append(data)
    return chunks


xmlish_text = st.text(
    alphabet=st.sampled_from(list("<>/='\"&;!?[] xmlnsa:-#\x00\x01\u00e9\u20ac\U0001f600\ud800")),
    max_size=300,
)
random_streams = st.one_of(
    st.lists(st.binary(max_size=400), max_size=6),
    xmlish_text.map(lambda text: [HEADER, text.encode("utf-8", "surrogatepass")]),
    st.binary(max_size=600).map(lambda b: [HEADER, b]),
)


class FailureLog:
    """Collects failures logged by xmppd (an unexpected exception somewhere)."""

    def __init__(self, testcase: unittest.TestCase):
        self.failures: list[dict] = []
        globalLogPublisher.addObserver(self.observe)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event: dict) -> None:
        if "log_failure" in event and str(event.get("log_namespace", "")).startswith("xmppd"):
            self.failures.append(event)


class StreamPropertyTests(unittest.TestCase):
    """The C2SStream over a StringTransport, fed random and mutated input."""

    def setUp(self):
        self.log = FailureLog(self)

    def feed(self, chunks: list[bytes]) -> None:
        reactor_ = MemoryReactorClock()
        guard = ClientGuard(reactor_, max_connections_per_ip=4, max_sessions_per_account=2)
        factory = make_factory(reactor=reactor_, guard=guard, max_stanza_size=8192,
                               max_depth=16, max_attributes=16, max_elements=64)
        client = Client(factory)
        events = []
        for chunk in chunks:
            events += client.send(chunk)  # any exception here fails the example
            reactor_.advance(1)
        if client.closed:
            self.assertEqual(events[-1], ("end",))
        # Nothing unexpected happened inside the server.
        self.assertEqual(self.log.failures, [])
        internal = [e for e in events if getattr(e, "name", None) == "error"
                    and e.firstChildElement() is not None
                    and e.firstChildElement().name == "internal-server-error"]
        self.assertEqual(internal, [])
        client.lose()
        reactor_.advance(10_000)
        self.assertEqual(factory.streams, set())
        self.assertEqual(guard.connections, {})
        self.assertEqual(guard.sessions, {})
        # The factory still accepts and logs in a well-behaved client.
        good = Client(factory)
        self.assertEqual(good.login(), f"alice@{DOMAIN}/res")
        good.lose()
        self.assertEqual(reactor_.getDelayedCalls(), [])

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated_streams())
    def test_mutated_streams(self, chunks):
        self.feed(chunks)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(random_streams)
    def test_random_input(self, chunks):
        self.feed(chunks)

    @settings(max_examples=50, deadline=None)
    @given(st.sampled_from(hostile.ATTACKS), st.lists(st.integers(1, 4096), max_size=8))
    def test_attacks_in_any_pieces(self, attack, sizes):
        data = b""
        for chunk in attack.chunks():
            data += chunk
            if len(data) > 64 * 1024:
                break
        prefix = HEADER if attack.header else b""
        self.feed(_cut(prefix + data, sizes))


def draw_examples(strategy, count: int) -> list:
    """``count`` examples drawn by hypothesis (deterministically) for async use."""
    drawn: list = []

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example):
        drawn.append(example)

    collect()
    return drawn


class LoopbackPropertyTests(unittest.TestCase):
    """A few random and mutated streams against the real server over loopback."""

    timeout = 60

    @defer.inlineCallbacks
    def test_server_survives_random_streams(self):
        log = FailureLog(self)
        # (Mutated logins may fail; back-off would only slow this test down.)
        live = start_server(self, limits={**TEST_LIMITS, "auth_backoff_after": 1000})
        yield live.create_user("alice", "secret")
        yield live.create_user("bob", "pw")
        bob = yield login(live, "bob")
        self.addCleanup(bob.disconnect)
        examples = draw_examples(mutated_streams(), 12) + draw_examples(random_streams, 8)
        for chunks in examples:
            client = yield hostile.connect(reactor, HOST, live.port)
            for chunk in chunks:
                client.write(chunk)
            yield client.wait_until(reactor, lambda c=client: c.lost, 0.2)
            client.abort()
            yield client.closed
            self.assertNotEqual(client.condition, "internal-server-error")
            self.assertNotEqual(client.condition, "(unparsable server output)")
        self.assertEqual(log.failures, [])
        # Still accepting, still logging in, still delivering.
        alice = yield login(live, "alice", password="secret")
        self.addCleanup(alice.disconnect)
        message = domish.Element((None, "message"))
        message["to"] = str(bob.full_jid)
        message["id"] = "after-fuzz"
        message.addElement("body", content="still here")
        alice.send(message)
        deadline = reactor.seconds() + 10
        found = False
        while not found and reactor.seconds() < deadline:
            while bob.queue:
                stanza = bob.queue.popleft()
                found = found or stanza.getAttribute("id") == "after-fuzz"
            if not found:
                yield bob.wait_for_stanza(deadline - reactor.seconds())
        self.assertTrue(found)
