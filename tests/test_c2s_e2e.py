"""End-to-end tests of client streams over loopback TCP with real TLS and storage."""

from __future__ import annotations

import base64
from pathlib import Path

import scramp
from twisted.internet import defer, endpoints, protocol, reactor, ssl
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

import xmppd  # noqa: F401  (compat shim first)
from tests.c2s_fakes import (
    NS_BIND,
    NS_REGISTER,
    NS_SASL,
    NS_STREAMS,
    NS_TLS,
    factory_config,
    stream_error_condition,
)
from xmppd import tls
from xmppd.auth import make_portal
from xmppd.c2s.factory import C2SFactory
from xmppd.sm.session import Session
from xmppd.storage.accounts import AccountStore
from xmppd.storage.database import Database

DOMAIN = "localhost"
TIMEOUT = 10


class EchoSessionManager:
    """A fake session manager: records bind/unbind; its router delivers stanzas
    to the bound full JID in 'to', or echoes them back to the sender."""

    def __init__(self):
        self.router = self
        self.sessions: dict[str, object] = {}
        self.bound: list[str] = []
        self.unbound: list[str] = []
        self.unbind_waiters: list[defer.Deferred] = []

    domain = DOMAIN

    def stream_features(self):
        """No post-authentication features beyond bind."""
        return []

    def bind(self, connection, username, resource):
        full = jid.JID(tuple=(username, DOMAIN, resource or "auto"))
        session = Session(self, full, connection)
        self.sessions[full.full()] = session
        self.bound.append(full.full())
        return session

    def let_idle(self, session):
        return False

    def unbind(self, session, interrupted=False):
        self.unbound.append(session.jid.full())
        self.sessions.pop(session.jid.full(), None)
        waiters, self.unbind_waiters = self.unbind_waiters, []
        for d in waiters:
            d.callback(None)

    def from_client(self, session, stanza):
        """What the real SM does with client stanzas after its own checks: route them."""
        self.route(stanza)

    def deliver(self, session, stanza):
        """Write to the session (the real SM runs the delivery hooks first)."""
        session.write(stanza)

    def route(self, stanza):
        target = self.sessions.get(stanza.getAttribute("to", ""))
        if target is None:
            target = self.sessions[stanza["from"]]
        target.deliver(stanza)

    def wait_unbind(self) -> defer.Deferred:
        d = defer.Deferred()
        self.unbind_waiters.append(d)
        return d


class TestClient(protocol.Protocol):
    """A small XMPP client for tests: raw writes, parsed events in a queue."""

    def __init__(self):
        self.events: defer.DeferredQueue = defer.DeferredQueue()
        self.closed = defer.Deferred()
        self.parser = None
        self.reset()

    def reset(self):
        self.parser = domish.elementStream()
        self.parser.DocumentStartEvent = lambda root: self.events.put(("header", root))
        self.parser.ElementEvent = self.events.put
        self.parser.DocumentEndEvent = lambda: self.events.put(("end",))

    def dataReceived(self, data):
        self.parser.parse(data)

    def connectionLost(self, reason):
        self.closed.callback(None)

    def send(self, data):
        self.transport.write(data.encode("utf-8") if isinstance(data, str) else data)

    def next(self) -> defer.Deferred:
        d = self.events.get()
        d.addTimeout(TIMEOUT, reactor)
        return d

    def header(self):
        self.send(
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAMS}' to='{DOMAIN}' version='1.0'>"
        )

    @defer.inlineCallbacks
    def open_stream(self):
        """Send a header; fire with the features element."""
        self.header()
        kind, root = yield self.next()
        assert kind == "header", kind
        features = yield self.next()
        assert features.name == "features", features.toXml()
        return features

    @defer.inlineCallbacks
    def starttls(self, trust_pem: bytes):
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        proceed = yield self.next()
        assert proceed.name == "proceed", proceed.toXml()
        self.transport.startTLS(
            ssl.optionsForClientTLS(DOMAIN, trustRoot=ssl.Certificate.loadPEM(trust_pem))
        )
        self.reset()

    @defer.inlineCallbacks
    def scram(self, username, password, mechanism="SCRAM-SHA-256"):
        """Run SCRAM; fire with the final element (success or failure)."""
        client = scramp.ScramClient([mechanism], username, password)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>")
        challenge = yield self.next()
        if challenge.name != "challenge":
            return challenge
        client.set_server_first(base64.b64decode(str(challenge)).decode())
        final = base64.b64encode(client.get_client_final().encode()).decode()
        self.send(f"<response xmlns='{NS_SASL}'>{final}</response>")
        result = yield self.next()
        if result.name == "success":
            client.set_server_final(base64.b64decode(str(result)).decode())
            self.reset()
        return result

    def channel_binding(self, cb_type):
        """This side's channel binding data of the TLS connection (RFC 9266, RFC 5929)."""
        from xmppd.c2s.channel_binding import end_point_hash

        tls = self.transport.getHandle()
        if cb_type == "tls-exporter":
            return tls.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        return end_point_hash(tls.get_peer_certificate().to_cryptography())

    @defer.inlineCallbacks
    def scram_plus(self, username, password, cb_type, data=None, header=None):
        """SCRAM-SHA-256-PLUS computed here (scramp has no tls-exporter); the final element."""
        import hashlib
        import hmac
        import os

        data = self.channel_binding(cb_type) if data is None else data
        header = header or f"p={cb_type},,"
        nonce = base64.b64encode(os.urandom(18)).decode()
        bare = f"n={username},r={nonce}"
        first = base64.b64encode((header + bare).encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256-PLUS'>{first}</auth>")
        challenge = yield self.next()
        if challenge.name != "challenge":
            return challenge
        server_first = base64.b64decode(str(challenge)).decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]),
                                     int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        cbind = base64.b64encode(header.encode() + data).decode()
        without_proof = f"c={cbind},r={fields['r']}"
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored, auth_message, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature,
                                                              strict=True))).decode()
        final = base64.b64encode(f"{without_proof},p={proof}".encode()).decode()
        self.send(f"<response xmlns='{NS_SASL}'>{final}</response>")
        result = yield self.next()
        if result.name == "success":
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            expected = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest())
            assert base64.b64decode(str(result)) == b"v=" + expected, "bad server signature"
            self.reset()
        return result

    @defer.inlineCallbacks
    def bind(self, resource):
        self.send(
            f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        reply = yield self.next()
        assert reply["type"] == "result", reply.toXml()
        return str(reply.bind.jid)


class EndToEndTests(unittest.TestCase):
    """A real listening C2SFactory with AccountStore, TLS and a fake SM."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        base = Path(self.mktemp())
        base.mkdir(parents=True)
        self.db = Database(base / "xmppd.sqlite")
        yield self.db.open()
        self.addCleanup(self.db.close)
        self.accounts = AccountStore(self.db)
        yield self.accounts.create("alice", "wonderland")
        cert, key = base / "cert.pem", base / "key.pem"
        tls.ensure_certificate(cert, key, [DOMAIN])
        self.cert_pem = cert.read_bytes()
        self.tls_options = tls.server_tls_options(cert, key)
        self.sm = EchoSessionManager()

    def listen(self, **overrides):
        overrides.setdefault("require_encryption", True)
        overrides.setdefault("domain", DOMAIN)
        config = factory_config(overrides)
        settings = dict(
            session_manager=self.sm,
            accounts=self.accounts,
            portal=make_portal(self.accounts),
            tls_options=self.tls_options,
        )
        settings.update(overrides)
        factory = C2SFactory(config, **settings)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    @defer.inlineCallbacks
    def connect(self, port, direct_tls=False):
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if direct_tls:
            options = ssl.optionsForClientTLS(
                DOMAIN, trustRoot=ssl.Certificate.loadPEM(self.cert_pem)
            )
            endpoint = endpoints.wrapClientTLS(options, endpoint)
        client_proto = yield endpoints.connectProtocol(endpoint, TestClient())

        def close():
            if client_proto.transport.connected:
                client_proto.transport.abortConnection()
            return client_proto.closed

        self.addCleanup(close)
        return client_proto

    @defer.inlineCallbacks
    def login(self, port, resource="e2e", username="alice", password="wonderland"):
        client = yield self.connect(port)
        features = yield client.open_stream()
        assert features.starttls.required is not None
        yield client.starttls(self.cert_pem)
        yield client.open_stream()
        result = yield client.scram(username, password)
        self.assertEqual(result.name, "success", result.toXml())
        features = yield client.open_stream()
        self.assertIsNotNone(features.bind)
        full = yield client.bind(resource)
        return client, full

    @defer.inlineCallbacks
    def test_starttls_scram_bind_and_stanzas(self):
        factory, port = self.listen()
        client = yield self.connect(port)
        features = yield client.open_stream()
        self.assertIsNotNone(features.starttls.required)
        self.assertIsNone(features.mechanisms)
        yield client.starttls(self.cert_pem)
        features = yield client.open_stream()
        mechanisms = [str(m) for m in features.mechanisms.elements()]
        self.assertEqual(mechanisms, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
                                      "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        offer = next(features.elements("urn:xmpp:sasl-cb:0", "sasl-channel-binding"))
        self.assertEqual([c["type"] for c in offer.elements()],
                         ["tls-exporter", "tls-server-end-point"])
        result = yield client.scram("alice", "wonderland")
        self.assertEqual(result.name, "success")
        yield client.open_stream()
        full = yield client.bind("laptop")
        self.assertEqual(full, "alice@localhost/laptop")
        self.assertEqual(self.sm.bound, ["alice@localhost/laptop"])

        client.send("<message from='mallory@evil' to='bob@localhost'><body>hi</body></message>")
        echoed = yield client.next()
        self.assertEqual(echoed.name, "message")
        self.assertEqual(echoed["from"], "alice@localhost/laptop")
        self.assertEqual(str(echoed.body), "hi")

        unbound = self.sm.wait_unbind()
        client.send("</stream:stream>")
        end = yield client.next()
        self.assertEqual(end, ("end",))
        yield unbound
        yield client.closed
        self.assertEqual(self.sm.unbound, ["alice@localhost/laptop"])

    @defer.inlineCallbacks
    def plus_client(self):
        factory, port = self.listen()
        client = yield self.connect(port)
        yield client.open_stream()
        yield client.starttls(self.cert_pem)
        yield client.open_stream()
        return client

    @defer.inlineCallbacks
    def test_scram_plus_with_each_channel_binding(self):
        for cb_type in ("tls-exporter", "tls-server-end-point"):
            client = yield self.plus_client()
            result = yield client.scram_plus("alice", "wonderland", cb_type)
            self.assertEqual(result.name, "success", (cb_type, result.toXml()))
            features = yield client.open_stream()
            self.assertIsNotNone(features.bind)
            client.transport.loseConnection()
            yield client.closed

    @defer.inlineCallbacks
    def test_scram_plus_refuses_another_connections_binding(self):
        """Binding data of another TLS session (a relaying man in the middle) fails."""
        client = yield self.plus_client()
        result = yield client.scram_plus("alice", "wonderland", "tls-exporter", data=b"x" * 32)
        self.assertEqual((result.name, result.firstChildElement().name),
                         ("failure", "not-authorized"))

    @defer.inlineCallbacks
    def test_downgrade_is_refused(self):
        """A client that could bind ('y') while the server offers -PLUS: not-authorized."""
        client = yield self.plus_client()
        client_first = base64.b64encode(b"y,,n=alice,r=abcdefgh").decode()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{client_first}</auth>")
        result = yield client.next()
        self.assertEqual((result.name, result.firstChildElement().name),
                         ("failure", "not-authorized"))

    @defer.inlineCallbacks
    def test_unoffered_binding_type(self):
        client = yield self.plus_client()
        result = yield client.scram_plus("alice", "wonderland", "tls-unique", data=b"")
        self.assertEqual((result.name, result.firstChildElement().name),
                         ("failure", "malformed-request"))

    @defer.inlineCallbacks
    def test_wrong_password_over_tls(self):
        factory, port = self.listen()
        client = yield self.connect(port)
        yield client.open_stream()
        yield client.starttls(self.cert_pem)
        yield client.open_stream()
        result = yield client.scram("alice", "wrong", mechanism="SCRAM-SHA-1")
        self.assertEqual(result.name, "failure")
        self.assertEqual(next(result.elements()).name, "not-authorized")
        result = yield client.scram("nobody", "wrong")
        self.assertEqual(next(result.elements()).name, "not-authorized")

    @defer.inlineCallbacks
    def test_malformed_client_does_not_disturb_others(self):
        factory, port = self.listen()
        good, full = yield self.login(port, resource="good")
        bad = yield self.connect(port)
        yield bad.open_stream()
        bad.send("<message><body></message>")
        events = []
        while not events or events[-1] != ("end",):
            events.append((yield bad.next()))
        self.assertEqual(stream_error_condition(events), "not-well-formed")
        yield bad.closed

        good.send(f"<message to='{full}'><body>still here</body></message>")
        echoed = yield good.next()
        self.assertEqual(str(echoed.body), "still here")

    @defer.inlineCallbacks
    def test_conflict_between_two_connections(self):
        """The SM can close one stream from another connection's bind."""
        factory, port = self.listen()
        first, full = yield self.login(port, resource="same")
        session = self.sm.sessions[full]
        unbound = self.sm.wait_unbind()
        session.close("conflict")
        events = []
        while not events or events[-1] != ("end",):
            events.append((yield first.next()))
        self.assertEqual(stream_error_condition(events), "conflict")
        yield unbound
        self.assertEqual(self.sm.unbound, [full])

    @defer.inlineCallbacks
    def test_direct_tls(self):
        factory, port = self.listen(direct_tls=True)
        client = yield self.connect(port, direct_tls=True)
        features = yield client.open_stream()
        self.assertIsNone(features.starttls)
        result = yield client.scram("alice", "wonderland")
        self.assertEqual(result.name, "success")
        yield client.open_stream()
        full = yield client.bind("direct")
        self.assertEqual(full, "alice@localhost/direct")

    @defer.inlineCallbacks
    def test_register_then_login(self):
        factory, port = self.listen(registration_enabled=True)
        client = yield self.connect(port)
        yield client.open_stream()
        yield client.starttls(self.cert_pem)
        features = yield client.open_stream()
        self.assertIsNotNone(features.register)
        client.send(
            f"<iq type='set' id='reg'><query xmlns='{NS_REGISTER}'>"
            "<username>bob</username><password>builder</password></query></iq>"
        )
        reply = yield client.next()
        self.assertEqual(reply["type"], "result", reply.toXml())
        exists = yield self.accounts.exists("bob")
        self.assertTrue(exists)
        result = yield client.scram("bob", "builder", mechanism="SCRAM-SHA-1")
        self.assertEqual(result.name, "success")

    @defer.inlineCallbacks
    def test_plaintext_stream_when_encryption_optional(self):
        factory, port = self.listen(require_encryption=False, tls_options=None)
        client = yield self.connect(port)
        features = yield client.open_stream()
        self.assertIsNone(features.starttls)
        self.assertIsNotNone(features.mechanisms)
        payload = base64.b64encode(b"\0alice\0wonderland").decode()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
        result = yield client.next()
        self.assertEqual(result.name, "success")
