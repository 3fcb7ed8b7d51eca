"""The hostile-input battery: every attack, end to end over loopback.

Each test starts the real server (``start_server``) with two well-behaved
clients logged in, runs one attack from :mod:`xmppd.testing.hostile` on its own
connection and checks both the stream error the attacker gets and that the
well-behaved pair keeps exchanging messages while (and after) it happens.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path

from OpenSSL import SSL
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest
from twisted.words.xish import domish

import xmppd  # noqa: F401  (compat shim first)
from tests.support import make_test_certificate, process_output, pump_handshake, start_server
from xmppd import tls
from xmppd.testing import hostile
from xmppd.testing.scansion.client import ConnectError, ScansionClient
from xmppd.testing.scansion.parser import ClientAccount

REPO = str(Path(__file__).resolve().parent.parent)
DOMAIN = "localhost"
HOST = "127.0.0.1"
WAIT = 10.0
NS_PING = "urn:xmpp:ping"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"

# Small enough that size attacks end quickly, big enough for real clients.
TEST_LIMITS = {"max_stanza_size": 16384, "read_rate": 4 * 1024 * 1024, "read_burst": 262144}


@defer.inlineCallbacks
def login(server, username, resource="res", password="pw"):
    """A connected, authenticated, bound ScansionClient that answers pings."""
    client = ScansionClient(ClientAccount(username, f"{username}@{DOMAIN}", password, resource))
    yield client.connect(HOST, server.port, timeout=WAIT)
    client.answer_pings()
    return client


class BatteryTestCase(unittest.TestCase):
    """A live server with a well-behaved sender and receiver."""

    timeout = 60
    limits: dict = {}

    @defer.inlineCallbacks
    def setUp(self):
        self.live = start_server(self, limits={**TEST_LIMITS, **self.limits})
        self.port = self.live.port
        yield self.live.create_user("good", "pw")
        yield self.live.create_user("sender", "pw")
        self.good = yield login(self.live, "good")
        self.sender = yield login(self.live, "sender")
        self.addCleanup(self.good.disconnect)
        self.addCleanup(self.sender.disconnect)
        self.counter = 0

    @defer.inlineCallbacks
    def exchange(self, count=5):
        """Send ``count`` messages sender -> good; assert every one arrives, in order."""
        ids = []
        for _ in range(count):
            self.counter += 1
            ids.append(f"m{self.counter}")
            message = domish.Element((None, "message"))
            message["to"] = str(self.good.full_jid)
            message["type"] = "chat"
            message["id"] = ids[-1]
            message.addElement("body", content=f"message {self.counter}")
            self.sender.send(message)
            yield task.deferLater(reactor, 0.001, lambda: None)
        received = []
        deadline = reactor.seconds() + WAIT
        while len(received) < count:
            while self.good.queue:
                stanza = self.good.queue.popleft()
                if stanza.name == "message" and stanza.getAttribute("id") in ids:
                    received.append(stanza["id"])
            if len(received) >= count:
                break
            remaining = deadline - reactor.seconds()
            if remaining <= 0 or not (yield self.good.wait_for_stanza(remaining)):
                break
        self.assertEqual(received, ids, "the well-behaved client lost messages")
        self.assertTrue(self.good.connected and self.sender.connected)

    @defer.inlineCallbacks
    def under_attack(self, attack_deferred):
        """Exchange messages while the attack runs; fire with its result."""
        exchanged = self.exchange(10)
        result = yield attack_deferred
        yield exchanged
        yield self.exchange(3)
        return result

    @defer.inlineCallbacks
    def still_accepting(self):
        """A new connection still gets a stream header and features."""
        client = yield hostile.connect(reactor, HOST, self.port)
        client.write(hostile.stream_header(DOMAIN))
        yield client.wait_until(reactor, lambda: bool(client.elements), WAIT)
        self.assertTrue(client.header_received)
        self.assertEqual(client.elements[0].name, "features")
        client.abort()
        yield client.closed


def _attack_test(attack: hostile.Attack):
    @defer.inlineCallbacks
    def test(self):
        result = yield self.under_attack(
            hostile.run_attack(reactor, HOST, self.port, DOMAIN, attack, max_bytes=1024 * 1024)
        )
        self.assertIn(result.condition, attack.expected, result)
        self.assertTrue(result.closed)
        yield self.still_accepting()

    test.__doc__ = f"{attack.name}: {' or '.join(attack.expected)}; others unaffected."
    return test


class HostileInputTests(BatteryTestCase):
    """One test per attack in xmppd.testing.hostile.ATTACKS."""

    def test_every_attack_is_covered(self):
        names = {name for name in dir(self) if name.startswith("test_attack_")}
        self.assertEqual(len(names), len(hostile.ATTACKS))


for _attack in hostile.ATTACKS:
    _slug = re.sub(r"[^a-z0-9]+", "_", _attack.name.lower()).strip("_")
    setattr(HostileInputTests, f"test_attack_{_slug}", _attack_test(_attack))


class ConnectionFloodTests(BatteryTestCase):
    """limits.max_connections_per_ip, over loopback."""

    limits = {"max_connections_per_ip": 5}

    @defer.inlineCallbacks
    def test_flood_is_refused_with_policy_violation(self):
        result = yield self.under_attack(
            hostile.flood_connections(reactor, HOST, self.port, DOMAIN, limit=50)
        )
        self.assertEqual(result.condition, "policy-violation")
        # good + sender hold two of the five slots.
        self.assertEqual(result.sent, 4)
        yield self.still_accepting()
        # Every slot the flood took is given back once the server sees the
        # connections close: good + sender remain.
        guard = self.live.server.c2s_guard
        deadline = reactor.seconds() + WAIT
        while guard.connections.get(HOST) != 2 and reactor.seconds() < deadline:
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(guard.connections.get(HOST), 2)


class SessionLimitTests(BatteryTestCase):
    """limits.max_sessions_per_account: bind gets resource-constraint."""

    limits = {"max_sessions_per_account": 2}

    @defer.inlineCallbacks
    def test_third_session_is_refused(self):
        second = yield login(self.live, "good", resource="second")
        self.addCleanup(second.disconnect)
        with self.assertRaises(ConnectError) as raised:
            yield login(self.live, "good", resource="third")
        self.assertIn("resource-constraint", str(raised.exception))
        yield self.exchange(3)
        # Replacing an existing resource is still allowed (conflict).
        replacement = yield login(self.live, "good", resource="second")
        self.addCleanup(replacement.disconnect)
        yield self.exchange(3)


class GuessingTests(BatteryTestCase):
    """Failed SASL attempts back off per account and per address."""

    @defer.inlineCallbacks
    def test_guessing_gets_temporary_auth_failure(self):
        result = yield self.under_attack(
            hostile.guess_passwords(reactor, HOST, self.port, DOMAIN, "good", attempts=10)
        )
        self.assertEqual(result.condition, "temporary-auth-failure")
        self.assertEqual(result.sasl_failures[:3], ["not-authorized"] * 3)
        self.assertEqual(result.sasl_failures[3], "temporary-auth-failure")
        # The account is backing off: even its right password must wait.
        with self.assertRaises(ConnectError) as raised:
            yield login(self.live, "good", resource="later")
        self.assertIn("temporary-auth-failure", str(raised.exception))
        # The sessions that were already open are untouched.
        yield self.exchange(3)


class SilentConnectionTests(BatteryTestCase):
    """limits.negotiation_timeout: a silent connection gets connection-timeout."""

    limits = {"negotiation_timeout": 1}

    @defer.inlineCallbacks
    def test_silent_connection_is_closed(self):
        result = yield self.under_attack(
            hostile.stall(reactor, HOST, self.port, DOMAIN, timeout=WAIT)
        )
        self.assertEqual(result.condition, "connection-timeout")
        self.assertTrue(result.closed)


class DeadPeerTests(BatteryTestCase):
    """limits.idle_timeout / ping_timeout: a bound client that stops answering."""

    limits = {"idle_timeout": 0.5, "ping_timeout": 0.5}

    @defer.inlineCallbacks
    def test_dead_peer_is_pinged_then_dropped(self):
        yield self.live.create_user("mute", "pw")
        mute = yield hostile.connect(reactor, HOST, self.port)
        mute.write(hostile.stream_header(DOMAIN))
        payload = base64.b64encode(b"\0mute\0pw").decode()
        mute.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>".encode())
        yield mute.wait_until(reactor, lambda: "success" in mute.sasl_failures, WAIT)
        mute.reset()
        mute.elements.clear()
        mute.write(hostile.stream_header(DOMAIN))
        mute.write(f"<iq type='set' id='b'><bind xmlns='{NS_BIND}'/></iq>".encode())
        yield mute.wait_until(reactor, lambda: mute.condition is not None, WAIT)
        pings = [e for e in mute.elements if e.name == "iq" and e.getAttribute("type") == "get"]
        self.assertEqual(len(pings), 1)
        self.assertEqual(pings[0].firstChildElement().uri, NS_PING)
        self.assertEqual(mute.condition, "connection-timeout")
        yield hostile.wait_closed(reactor, mute, WAIT)
        # The clients that answer their pings stayed (their exchange ran for
        # longer than idle + ping timeouts together).
        yield self.exchange(5)


class ReadRateTests(BatteryTestCase):
    """limits.read_rate: a flood is slowed down (reading pauses), never dropped."""

    limits = {"read_rate": 262144, "read_burst": 65536}

    @defer.inlineCallbacks
    def test_whitespace_flood_is_paused_and_fully_read(self):
        factory = self.live.server.factories["c2s"]
        result = yield self.under_attack(
            hostile.whitespace_flood(reactor, HOST, self.port, DOMAIN, size=384 * 1024)
        )
        # The stanza after the flood was read and answered: every byte arrived.
        self.assertEqual(result.condition, "not-authorized")
        self.assertEqual(result.sent, 384 * 1024)
        self.assertGreater(factory.read_pauses, 0)

    @defer.inlineCallbacks
    def test_fast_messages_are_all_delivered(self):
        factory = self.live.server.factories["c2s"]
        body = "z" * 2000
        count = 200  # ~440 KB, several times the burst
        for i in range(count):
            message = domish.Element((None, "message"))
            message["to"] = str(self.good.full_jid)
            message["id"] = f"fast{i}"
            message.addElement("body", content=body)
            self.sender.send(message)
        received = []
        deadline = reactor.seconds() + WAIT * 3
        while len(received) < count and reactor.seconds() < deadline:
            while self.good.queue:
                stanza = self.good.queue.popleft()
                if stanza.name == "message" and stanza.getAttribute("id", "").startswith("fast"):
                    received.append(stanza["id"])
            if len(received) < count:
                yield self.good.wait_for_stanza(deadline - reactor.seconds())
        self.assertEqual(received, [f"fast{i}" for i in range(count)])
        self.assertGreater(factory.read_pauses, 0)


class _TLSProbe(protocol.Protocol):
    """Negotiates STARTTLS with a given client context; reports what happened."""

    def __init__(self, context_factory):
        self.context_factory = context_factory
        self.buffer = b""
        self.done = defer.Deferred()
        self.tls_started = False

    def connectionMade(self):
        self.transport.write(hostile.stream_header(DOMAIN))

    def dataReceived(self, data):
        if self.tls_started:
            # Any data decrypted after the handshake: the server accepted.
            if not self.done.called:
                self.done.callback("handshake completed")
            return
        self.buffer += data
        if b"</stream:features>" in self.buffer and b"<proceed" not in self.buffer:
            if b"starttls" not in self.buffer:
                self.done.callback("no starttls")
                return
            self.buffer = self.buffer.replace(b"</stream:features>", b"", 1)
            self.transport.write(f"<starttls xmlns='{NS_TLS}'/>".encode())
        if b"<proceed" in self.buffer:
            self.tls_started = True
            self.transport.startTLS(self.context_factory)
            # A new stream header: the server answers only after a handshake.
            self.transport.write(hostile.stream_header(DOMAIN))

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback("connection lost")


class _PinnedContext:
    """A legacy client context factory around a pyOpenSSL context."""

    isClient = 1

    def __init__(self, versions, ciphers=b"DEFAULT:@SECLEVEL=0"):
        self.versions = versions
        self.ciphers = ciphers

    def getContext(self):
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(self.versions[0])
        ctx.set_max_proto_version(self.versions[1])
        ctx.set_cipher_list(self.ciphers)
        return ctx


def _memory_handshake(client_ctx, server_ctx) -> str:
    """Run a TLS handshake in memory; the negotiated version or raise SSL.Error."""
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    pump_handshake(client, server)
    return client.get_protocol_version_name()


class TLSPolicyTests(unittest.TestCase):
    """c2s TLS: required by default, TLS 1.2 minimum, no compression."""

    timeout = 30

    @defer.inlineCallbacks
    def probe(self, port, versions):
        endpoint = TCP4ClientEndpoint(reactor, HOST, port)
        probe = yield connectProtocol(endpoint, _TLSProbe(_PinnedContext(versions)))
        outcome = yield probe.done
        if probe.transport.connected:
            probe.transport.abortConnection()
        return outcome

    def test_client_can_speak_tls_1_1(self):
        """Control: the TLS 1.1 client used below works against a server allowing it."""
        cert, key = make_test_certificate(self)
        server_ctx = SSL.Context(SSL.TLS_METHOD)
        server_ctx.use_certificate_file(str(cert))
        server_ctx.use_privatekey_file(str(key))
        server_ctx.set_min_proto_version(SSL.TLS1_VERSION)
        server_ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        client = _PinnedContext((SSL.TLS1_1_VERSION, SSL.TLS1_1_VERSION)).getContext()
        self.assertEqual(_memory_handshake(client, server_ctx), "TLSv1.1")
        ours = tls.server_tls_options(cert, key).getContext()
        client = _PinnedContext((SSL.TLS1_1_VERSION, SSL.TLS1_1_VERSION)).getContext()
        self.assertRaises(SSL.Error, _memory_handshake, client, ours)

    @defer.inlineCallbacks
    def test_tls_1_1_client_is_refused_over_starttls(self):
        live = start_server(self, c2s={"require_encryption": True})
        outcome = yield self.probe(live.port, (SSL.TLS1_1_VERSION, SSL.TLS1_1_VERSION))
        self.assertEqual(outcome, "connection lost")
        # The same probe with TLS 1.2 gets through: the refusal is the version.
        outcome = yield self.probe(live.port, (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION))
        self.assertEqual(outcome, "handshake completed")

    def test_context_options(self):
        cert, key = make_test_certificate(self)
        ctx = tls.server_tls_options(cert, key).getContext()
        options = ctx.set_options(0)  # returns the options in force
        self.assertTrue(options & SSL.OP_NO_COMPRESSION)
        self.assertTrue(options & SSL.OP_NO_TLSv1)
        self.assertTrue(options & SSL.OP_NO_TLSv1_1)

    def test_certificate_checked_against_served_domains_at_start(self):
        from twisted.logger import formatEvent, globalLogPublisher

        from tests.support import make_test_config

        cert, key = make_test_certificate(self, domains=("other.example",))
        config = make_test_config(self, tls={"certificate": str(cert), "key": str(key)})
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        start_server(self, config)
        warnings = [formatEvent(e) for e in logged if "not valid for" in formatEvent(e)]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("localhost, conference.localhost", warnings[0])

    @defer.inlineCallbacks
    def test_encryption_required_by_default(self):
        from xmppd.config import load_config

        self.assertTrue(load_config(None).c2s.require_encryption)
        live = start_server(self, c2s={"require_encryption": True})
        yield live.create_user("alice", "pw")
        client = yield hostile.connect(reactor, HOST, live.port)
        client.write(hostile.stream_header(DOMAIN))
        yield client.wait_until(reactor, lambda: bool(client.elements), WAIT)
        features = client.elements[0]
        self.assertIsNotNone(features.starttls)
        self.assertIsNotNone(features.starttls.required)
        self.assertIsNone(features.mechanisms)
        payload = base64.b64encode(b"\0alice\0pw").decode()
        client.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>".encode())
        yield client.wait_until(reactor, lambda: bool(client.sasl_failures), WAIT)
        self.assertEqual(client.sasl_failures, ["encryption-required"])
        client.abort()
        yield client.closed


class ConfigWiringTests(unittest.TestCase):
    """[limits] reaches both client listeners, which share one guard."""

    def test_limits_reach_the_factories(self):
        from tests.support import make_test_config

        config = make_test_config(
            self,
            c2s={"direct_tls_listen": "tcp:0:interface=127.0.0.1"},
            limits={"max_stanza_size": 5000, "max_depth": 7, "max_attributes": 9,
                    "max_elements": 99, "max_auth_attempts": 2, "negotiation_timeout": 4,
                    "idle_timeout": 5, "ping_timeout": 6, "read_rate": 7000,
                    "read_burst": 8000, "max_connections_per_ip": 3,
                    "max_sessions_per_account": 4, "auth_backoff_after": 5,
                    "auth_backoff": 1.5, "auth_backoff_max": 99},
        )
        live = start_server(self, config)
        factories = [live.server.factories[n] for n in ("c2s", "c2s_direct_tls")]
        for factory in factories:
            self.assertEqual(
                (factory.limits.max_stanza_size, factory.limits.max_depth,
                 factory.limits.max_attributes, factory.limits.max_elements,
                 factory.limits.max_auth_attempts, factory.limits.negotiation_timeout,
                 factory.limits.idle_timeout, factory.limits.ping_timeout,
                 factory.limits.read_rate, factory.limits.read_burst),
                (5000, 7, 9, 99, 2, 4, 5, 6, 7000, 8000),
            )
        guard = factories[0].guard
        self.assertIs(factories[1].guard, guard)
        self.assertEqual((guard.max_connections_per_ip, guard.max_sessions_per_account),
                         (3, 4))
        self.assertEqual((guard.auth_accounts.threshold, guard.auth_accounts.base,
                          guard.auth_accounts.maximum), (5, 1.5, 99))


class GracefulCloseTests(BatteryTestCase):
    """A stream error must reach a client that is still sending (no reset)."""

    # The default limits: the client's bytes pile up unread on the server
    # (reading pauses) by the time the stanza reaches the size cap.
    limits = {"max_stanza_size": 262144, "read_rate": 65536, "read_burst": 262144}

    @defer.inlineCallbacks
    def test_error_reaches_a_client_that_keeps_sending(self):
        # The attacker runs in its own process, as a real one would: the
        # server closes while the client is still writing.
        script = (
            "import sys\n"
            "from twisted.internet import task\n"
            "from xmppd.testing import hostile\n"
            "def main(reactor):\n"
            "    results = []\n"
            "    d = task.deferLater(reactor, 0, lambda: None)\n"
            "    for _ in range(20):\n"
            "        d.addCallback(lambda _: hostile.run_attack(reactor, '127.0.0.1', "
            f"{self.port}, 'localhost', hostile.ATTACKS[0], max_bytes=4 * 1024 * 1024))\n"
            "        d.addCallback(lambda r: results.append(str(r.condition)))\n"
            "    return d.addCallback(lambda _: print(' '.join(results)))\n"
            "task.react(main)\n"
        )
        out, err, code = yield process_output(
            sys.executable, ["-c", script], env=dict(os.environ, PYTHONPATH=REPO)
        )
        self.assertEqual(code, 0, err.decode())
        self.assertEqual(out.decode().split(), ["policy-violation"] * 20, err.decode())
        yield self.exchange(3)
