"""Federation end to end: two xmppd servers on loopback, users chatting across them.

a.example listens on 127.0.0.1 and b.example on 127.0.0.2, each with its
own generated self-signed certificate (so the servers authenticate each
other by dialback over TLS); each knows the other's S2S port through its
static routes, set once both listen (ports are 0).
"""

import datetime
import re
from pathlib import Path

from twisted.internet import defer, interfaces, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest
from zope.interface import implementer

from tests.support import make_test_certificate, make_test_config, start_server
from tests.test_s2s_resolver import FakeDNS
from tests.test_server_e2e import element, next_stanza
from xmppd.testing.scansion.client import ScansionClient
from xmppd.testing.scansion.parser import ClientAccount

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def domain_config(testcase, domain, address, **s2s):
    """A test server for ``domain`` whose listeners bind ``address``; federation on."""
    served = (domain, f"conference.{domain}", f"pubsub.{domain}")
    cert, key = make_test_certificate(testcase, served)
    listen = f"tcp:0:interface={address}"
    return make_test_config(
        testcase,
        server={"domain": domain},
        tls={"certificate": str(cert), "key": str(key)},
        muc={"domain": served[1]},
        pubsub={"domain": served[2]},
        c2s={"listen": listen},
        components={"listen": ""},
        http={"listen": ""},
        s2s={"enabled": True, "listen": listen, **s2s},
    )


def route_to(server, other, address):
    """Make ``server`` reach every domain of ``other`` at its S2S port on ``address``."""
    port = other.port_of("s2s")
    for domain in other.config.served_domains:
        server.server.s2s.resolver.routes[domain] = f"tcp:host={address}:port={port}"


def summaries(server):
    """(direction, local, remote domains, TLS, authentication) of each S2S connection."""
    return [(c.direction, c.local, c.remote, c.tls, c.auth)
            for c in server.server.s2s.connections()]


@defer.inlineCallbacks
def login(server, username, address, wait_self=True):
    """A logged-in, available client of that server."""
    domain = server.config.domain
    client = ScansionClient(ClientAccount(username, f"{username}@{domain}", "pw", "res"))
    yield client.connect(address, server.port, timeout=5)
    client.send(element("<presence/>"))  # available: messages to the bare JID reach it
    if wait_self:
        yield next_stanza(client, lambda s: s.name == "presence")  # its own presence back
    return client


@defer.inlineCallbacks
def log_in_both(testcase):
    """alice on a.example (127.0.0.1) and bob on b.example (127.0.0.2), logged in."""
    yield testcase.a.create_user("alice", "pw")
    yield testcase.b.create_user("bob", "pw")
    testcase.alice = yield login(testcase.a, "alice", "127.0.0.1")
    testcase.bob = yield login(testcase.b, "bob", "127.0.0.2")
    testcase.addCleanup(testcase.alice.disconnect)
    testcase.addCleanup(testcase.bob.disconnect)


class TwoServers(unittest.TestCase):
    """a.example and b.example running, federating, with alice and bob logged in."""

    timeout = 60
    #: Extra [s2s] settings of b.example.
    b_settings: dict = {}

    def config_for(self, domain, address, **s2s):
        """The configuration of one of the two servers."""
        return domain_config(self, domain, address, **s2s)

    @defer.inlineCallbacks
    def setUp(self):
        self.a = start_server(self, self.config_for("a.example", "127.0.0.1"))
        self.b = start_server(self, self.config_for("b.example", "127.0.0.2",
                                                    **self.b_settings))
        route_to(self.a, self.b, "127.0.0.2")
        route_to(self.b, self.a, "127.0.0.1")
        yield log_in_both(self)


class FederationTests(TwoServers):
    """Two servers federate: chat, subscriptions, presence, iq, MUC, bounces."""

    @defer.inlineCallbacks
    def test_chat_both_ways(self):
        self.alice.send(element("<message to='bob@b.example' type='chat' id='m1'>"
                                "<body>hello from a</body></message>"))
        got = yield next_stanza(self.bob, lambda s: s.name == "message")
        self.assertEqual((got["from"], got.getAttribute("type"), str(got.body)),
                         ("alice@a.example/res", "chat", "hello from a"))
        self.bob.send(element("<message to='alice@a.example/res' type='chat' id='m2'>"
                              "<body>hello from b</body></message>"))
        got = yield next_stanza(self.alice, lambda s: s.name == "message")
        self.assertEqual((got["from"], str(got.body)), ("bob@b.example/res", "hello from b"))
        # Both directions went over dialback-authenticated TLS streams.
        lines = summaries(self.a) + summaries(self.b)
        self.assertIn(("out", "a.example", ("b.example",), True, "dialback"), lines)
        self.assertIn(("out", "b.example", ("a.example",), True, "dialback"), lines)

    @defer.inlineCallbacks
    def test_subscription_dance_and_presence(self):
        alice, bob = self.alice, self.bob
        alice.send(element("<presence to='bob@b.example' type='subscribe'/>"))
        request = yield next_stanza(bob, lambda s: s.name == "presence"
                                    and s.getAttribute("type") == "subscribe")
        self.assertEqual(request["from"], "alice@a.example")
        bob.send(element("<presence to='alice@a.example' type='subscribed'/>"))
        approved = yield next_stanza(alice, lambda s: s.name == "presence"
                                     and s.getAttribute("type") == "subscribed")
        self.assertEqual(approved["from"], "bob@b.example")
        # Alice's server probes, Bob's answers with his available presence.
        available = yield next_stanza(alice, lambda s: s.name == "presence"
                                      and s.getAttribute("type") is None)
        self.assertEqual(available["from"], "bob@b.example/res")
        # Alice logs in again: her server probes Bob's, which answers for him.
        yield alice.disconnect()
        alice = self.alice = yield login(self.a, "alice", "127.0.0.1", wait_self=False)
        self.addCleanup(alice.disconnect)
        probed = yield next_stanza(alice, lambda s: s.name == "presence"
                                   and s["from"].startswith("bob@"))
        self.assertEqual((probed["from"], probed.getAttribute("type")),
                         ("bob@b.example/res", None))
        # Bob goes away, then offline: Alice sees both.
        bob.send(element("<presence><show>away</show></presence>"))
        away = yield next_stanza(alice, lambda s: s.name == "presence" and s.show is not None)
        self.assertEqual((away["from"], str(away.show)), ("bob@b.example/res", "away"))
        yield bob.disconnect()
        gone = yield next_stanza(alice, lambda s: s.name == "presence"
                                 and s.getAttribute("type") == "unavailable")
        self.assertEqual(gone["from"], "bob@b.example/res")

    @defer.inlineCallbacks
    def test_iq_round_trips(self):
        self.alice.send(element("<iq to='b.example' type='get' id='p1'>"
                                "<ping xmlns='urn:xmpp:ping'/></iq>"))
        pong = yield next_stanza(self.alice, lambda s: s.name == "iq")
        self.assertEqual((pong["from"], pong["type"], pong["id"]), ("b.example", "result", "p1"))
        self.bob.send(element("<iq to='a.example' type='get' id='d1'>"
                              "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"))
        info = yield next_stanza(self.bob, lambda s: s.name == "iq")
        self.assertEqual((info["from"], info["type"]), ("a.example", "result"))
        features = [f["var"] for f in info.query.elements() if f.name == "feature"]
        self.assertIn("urn:xmpp:ping", features)
        # A user's vCard on the other server.
        self.bob.send(element("<iq type='set' id='v1'><vCard xmlns='vcard-temp'>"
                              "<FN>Bob B.</FN></vCard></iq>"))
        yield next_stanza(self.bob, lambda s: s.name == "iq" and s["id"] == "v1")
        self.alice.send(element("<iq to='bob@b.example' type='get' id='v2'>"
                                "<vCard xmlns='vcard-temp'/></iq>"))
        card = yield next_stanza(self.alice, lambda s: s.name == "iq" and s["id"] == "v2")
        self.assertEqual((card["from"], card["type"], str(card.vCard.FN)),
                         ("bob@b.example", "result", "Bob B."))

    @defer.inlineCallbacks
    def test_join_a_room_on_the_other_server(self):
        self.alice.send(element("<presence to='room@conference.b.example/alice'>"
                                "<x xmlns='http://jabber.org/protocol/muc'/></presence>"))
        joined = yield next_stanza(self.alice, lambda s: s.name == "presence")
        self.assertEqual(joined["from"], "room@conference.b.example/alice")
        self.assertIsNone(joined.getAttribute("type"))
        muc = next(joined.elements("http://jabber.org/protocol/muc#user", "x"))
        codes = {s["code"] for s in muc.elements() if s.name == "status"}
        self.assertEqual(codes, {"110", "201"})
        item = next(c for c in muc.elements() if c.name == "item")
        self.assertEqual(item["jid"], "alice@a.example/res")

    @defer.inlineCallbacks
    def test_unknown_domain_is_remote_server_not_found(self):
        self.alice.send(element("<message to='nobody@nowhere.invalid' type='chat' id='x1'>"
                                "<body>?</body></message>"))
        bounced = yield next_stanza(self.alice, lambda s: s.name == "message")
        self.assertEqual((bounced["type"], bounced["from"], bounced["id"]),
                         ("error", "nobody@nowhere.invalid", "x1"))
        self.assertEqual(bounced.error.firstChildElement().name, "remote-server-not-found")


class RawPeer(protocol.Protocol):
    """A hostile 'server': writes what the test says, collects what it gets back."""

    def __init__(self):
        self.received = b""
        self.closed: defer.Deferred = defer.Deferred()
        self._waiting = []

    def dataReceived(self, data):
        """Collect."""
        self.received += data
        waiting, self._waiting = self._waiting, []
        for pattern, d in waiting:
            self._check(pattern, d)

    def _check(self, pattern, d):
        found = re.search(pattern, self.received.decode(errors="replace"))
        if found:
            d.callback(found)
        else:
            self._waiting.append((pattern, d))

    def wait_for(self, pattern):
        """Fires with the match once what was received matches the regular expression."""
        d = defer.Deferred()
        self._check(pattern, d)
        return d

    def connectionLost(self, reason=None):
        """Fire closed."""
        self.closed.callback(self.received.decode(errors="replace"))


class HostilePeerTests(TwoServers):
    """A broken or hostile remote server gets a stream error and local users carry on.

    b.example lets a.example in without TLS (``insecure_domains``) so the
    raw peer can speak plain XML, and gives up on negotiations after 1 s.
    """

    b_settings = {"insecure_domains": ["a.example"], "connect_timeout": 1.0}

    @defer.inlineCallbacks
    def raw_peer(self, *writes):
        """Connect to b.example's S2S port, write each chunk; fires with the peer."""
        peer = RawPeer()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.2", self.b.port_of("s2s"))
        yield connectProtocol(endpoint, peer)
        for chunk in writes:
            peer.transport.write(chunk.encode() if isinstance(chunk, str) else chunk)
        return peer

    @defer.inlineCallbacks
    def assert_users_unaffected(self):
        self.alice.send(element("<message to='bob@b.example' type='chat' id='ok'>"
                                "<body>still here</body></message>"))
        got = yield next_stanza(self.bob, lambda s: s.name == "message")
        self.assertEqual(str(got.body), "still here")

    @defer.inlineCallbacks
    def test_garbage(self):
        peer = yield self.raw_peer(b"\x00\xff<<<garbage")
        text = yield peer.closed
        self.assertIn("<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", text)
        yield self.assert_users_unaffected()

    @defer.inlineCallbacks
    def test_wrong_dialback_key(self):
        # a.example's real server is asked and says the key is not its own.
        peer = yield self.raw_peer(
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
            " xmlns:db='jabber:server:dialback' from='a.example' to='b.example' version='1.0'>"
            "<db:result from='a.example' to='b.example'>" + "0" * 64 + "</db:result>"
            "<message from='eve@a.example' to='bob@b.example'><body>forged</body></message>")
        text = yield peer.closed
        self.assertIn("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", text)
        yield self.assert_users_unaffected()
        self.assertEqual([s for s in self.bob.queue if s.name == "message"], [])

    @defer.inlineCallbacks
    def test_endless_stanza(self):
        # A peer that just sends bytes: one stanza that never ends. The parser stops
        # at limits.max_stanza_size; nothing more is kept.
        peer = yield self.raw_peer(STREAM_HEADER + "<message><body>")
        flooder = Flooder(peer.transport, b"x" * 65536)
        text = yield peer.closed
        flooder.stopProducing()
        self.assertIn("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", text)
        limit = self.b.config.limits.max_stanza_size
        self.assertGreater(flooder.written, limit)
        yield self.assert_users_unaffected()

    @defer.inlineCallbacks
    def test_tls_never_completed(self):
        peer = yield self.raw_peer(
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
            " xmlns:db='jabber:server:dialback' from='c.example' to='b.example' version='1.0'>"
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        started = reactor.seconds()
        text = yield peer.closed
        self.assertIn("<proceed", text)
        self.assertLess(reactor.seconds() - started, 5)  # dropped after connect_timeout
        yield self.assert_users_unaffected()


def write_ca_signed(testcase, domain, ca):
    """A certificate for domain's served names signed by ``ca`` (name, key); paths."""
    from cryptography.hazmat.primitives import serialization

    from tests.s2s_fakes import make_certificate, make_key

    folder = Path(testcase.mktemp())
    folder.mkdir()
    key = make_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = make_certificate(domain, key, ca, dns=(domain, f"conference.{domain}",
                                                  f"pubsub.{domain}"),
                            not_before=now - datetime.timedelta(days=1))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


class CertificateFederationTests(TwoServers):
    """Certificates from an authority both trust: SASL EXTERNAL instead of dialback."""

    def setUp(self):
        from cryptography.hazmat.primitives import serialization

        from tests.s2s_fakes import make_certificate, make_key

        ca_key = make_key()
        now = datetime.datetime.now(datetime.UTC)
        ca = make_certificate("Federation Test CA", ca_key, ca=True,
                              not_before=now - datetime.timedelta(days=1))
        ca_file = Path(self.mktemp()).resolve()
        ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.certificates = {d: write_ca_signed(self, d, ("Federation Test CA", ca_key))
                             for d in ("a.example", "b.example")}
        self.s2s_settings = {"ca_file": str(ca_file), "allow_dialback": False}
        return super().setUp()

    def config_for(self, domain, address, **s2s):
        config = domain_config(self, domain, address, **self.s2s_settings, **s2s)
        cert, key = self.certificates[domain]
        return config.replace(tls=config.tls.__class__(certificate=cert, key=key))

    @defer.inlineCallbacks
    def test_chat_over_sasl_external(self):
        self.alice.send(element("<message to='bob@b.example' type='chat' id='m1'>"
                                "<body>signed</body></message>"))
        got = yield next_stanza(self.bob, lambda s: s.name == "message")
        self.assertEqual(str(got.body), "signed")
        self.assertIn(("out", "a.example", ("b.example",), True, "SASL EXTERNAL"),
                      summaries(self.a))
        self.assertIn(("in", "b.example", ("a.example",), True, "SASL EXTERNAL"),
                      summaries(self.b))


#: A domain that is not special-use (RFC 6761), so the resolver asks "DNS" (a fake) for it.
DIRECT = "b.xmppd-e2e.net"


class DirectTLSFederationTests(unittest.TestCase):
    """a.example reaches DIRECT only through an ``_xmpps-server`` SRV record pointing at
    its direct TLS listener (XEP-0368); DIRECT reaches a.example by a static route."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        from xmppd.s2s.resolver import Resolver

        self.a = start_server(self, domain_config(self, "a.example", "127.0.0.1"))
        self.b = start_server(self, domain_config(
            self, DIRECT, "127.0.0.2", direct_tls_listen="tcp:0:interface=127.0.0.2"))
        route_to(self.b, self.a, "127.0.0.1")
        self.tls_port = self.b.port_of("s2s_direct_tls")
        self.dns = FakeDNS({f"_xmpps-server._tcp.{DIRECT}":
                               [(0, 0, self.tls_port, "127.0.0.2")]})
        self.a.server.s2s.resolver = Resolver(dns_resolver=self.dns, reactor=reactor)
        yield log_in_both(self)

    @defer.inlineCallbacks
    def chat(self, body):
        self.alice.send(element(f"<message to='bob@{DIRECT}' type='chat'>"
                                f"<body>{body}</body></message>"))
        got = yield next_stanza(self.bob, lambda s: s.name == "message")
        self.assertEqual((got["from"], str(got.body)), ("alice@a.example/res", body))
        self.bob.send(element(f"<message to='alice@a.example/res' type='chat'>"
                              f"<body>re: {body}</body></message>"))
        got = yield next_stanza(self.alice, lambda s: s.name == "message")
        self.assertEqual((got["from"], str(got.body)), (f"bob@{DIRECT}/res", f"re: {body}"))

    @defer.inlineCallbacks
    def test_chat_over_direct_tls(self):
        yield self.chat("over direct TLS")
        self.assertEqual(self.dns.asked[0], f"_xmpps-server._tcp.{DIRECT}")
        out = [s for s in self.a.server.s2s.outgoing if s.remote == DIRECT]
        self.assertEqual(len(out), 1)
        self.assertEqual((out[0].direct_tls, out[0].tls, out[0].auth_method, out[0].alpn),
                         (True, True, "dialback", "xmpp-server"))
        incoming = [s for s in self.b.server.s2s.incoming if "a.example" in s.authenticated]
        self.assertEqual(len(incoming), 1)
        # TLS from the first byte on the direct TLS port, ALPN and SNI as XEP-0368 says.
        self.assertEqual((incoming[0].direct_tls, incoming[0].alpn, incoming[0].server_name),
                         (True, "xmpp-server", DIRECT))
        self.assertIn(("in", DIRECT, ("a.example",), True, "dialback"), summaries(self.b))

    @defer.inlineCallbacks
    def test_falls_back_to_starttls_when_direct_tls_fails(self):
        # The _xmpps-server record wrongly names the STARTTLS port: the handshake
        # fails, the _xmpp-server target is tried next.
        plain = self.b.port_of("s2s")
        self.dns.table = {f"_xmpps-server._tcp.{DIRECT}": [(0, 0, plain, "127.0.0.2")],
                            f"_xmpp-server._tcp.{DIRECT}": [(0, 0, plain, "127.0.0.2")]}
        yield self.chat("after falling back")
        out = [s for s in self.a.server.s2s.outgoing if s.remote == DIRECT]
        self.assertEqual([(s.direct_tls, s.tls, s.auth_method) for s in out],
                         [(False, True, "dialback")])

    @defer.inlineCallbacks
    def test_plain_xml_on_the_direct_tls_port_fails_the_handshake(self):
        peer = RawPeer()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.2", self.tls_port), peer)
        peer.transport.write(
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
            b"streams' xmlns:db='jabber:server:dialback' from='a.example' to='"
            + DIRECT.encode() + b"' version='1.0'>")
        text = yield peer.closed
        self.assertNotIn("<stream", text)  # no XML back, only (maybe) a TLS alert
        self.assertEqual(self.b.server.s2s.incoming, set())
        yield self.chat("unaffected")


@implementer(interfaces.IPushProducer)
class Flooder:
    """Writes the same chunk to a connection for ever, as fast as it takes it."""

    def __init__(self, transport, chunk):
        self.transport = transport
        self.chunk = chunk
        self.written = 0
        self.paused = self.stopped = False
        self._call = None
        transport.registerProducer(self, True)
        self.resumeProducing()

    def _write(self):
        self._call = None
        while not (self.paused or self.stopped):
            self.transport.write(self.chunk)
            self.written += len(self.chunk)

    def pauseProducing(self):
        """The connection's buffer is full."""
        self.paused = True

    def resumeProducing(self):
        """Write again (soon)."""
        self.paused = False
        if self._call is None and not self.stopped:
            self._call = reactor.callLater(0, self._write)

    def stopProducing(self):
        """The connection is gone."""
        self.stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()


STREAM_HEADER = ("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
                 "streams' xmlns:db='jabber:server:dialback' from='a.example' to='b.example' "
                 "version='1.0'>")


class RemoteDomainLimitTests(TwoServers):
    """Raw peers that authenticate as a.example by dialback (they know its secret) and
    then flood b.example, which lets a.example in without TLS, reads at most
    64 KiB/s from all of a.example's connections together and takes at most 3 of them."""

    b_settings = {"insecure_domains": ["a.example"], "max_incoming_per_domain": 3,
                  "domain_read_rate": 65536, "domain_read_burst": 65536}

    @defer.inlineCallbacks
    def dialback_peer(self):
        """A raw connection to b.example, authenticated as a.example (or refused)."""
        from xmppd.s2s.dialback import dialback_key

        peer = RawPeer()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.2", self.b.port_of("s2s"))
        yield connectProtocol(endpoint, peer)
        peer.transport.write(STREAM_HEADER.encode())
        found = yield peer.wait_for(r"<stream:stream [^>]*\bid='([0-9a-f]+)'")
        key = dialback_key(self.a.server.s2s.secret, "b.example", "a.example", found.group(1))
        peer.transport.write(f"<db:result from='a.example' to='b.example'>{key}</db:result>"
                             .encode())
        yield peer.wait_for(r"type='valid'|</stream:stream>")
        return peer

    @defer.inlineCallbacks
    def local_chat(self, body):
        """bob (b.example) writes to dave (b.example) and to alice (a.example)."""
        self.bob.send(element(f"<message to='dave@b.example' type='chat'><body>{body}</body>"
                              "</message>"))
        got = yield next_stanza(self.dave, lambda s: s.name == "message")
        self.assertEqual(str(got.body), body)
        self.bob.send(element(f"<message to='alice@a.example' type='chat'><body>{body}</body>"
                              "</message>"))
        got = yield next_stanza(self.alice, lambda s: s.name == "message")
        self.assertEqual(str(got.body), body)

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.b.create_user("dave", "pw")
        self.dave = yield login(self.b, "dave", "127.0.0.2")
        self.addCleanup(self.dave.disconnect)

    def a_streams(self):
        return [s for s in self.b.server.s2s.incoming if "a.example" in s.authenticated]

    @defer.inlineCallbacks
    def test_flood_is_read_at_the_domain_rate(self):
        peers = []
        for _ in range(2):
            peer = yield self.dialback_peer()
            self.assertIn("type='valid'", peer.received.decode())
            self.addCleanup(peer.transport.abortConnection)
            peers.append(peer)
        streams = self.a_streams()
        self.assertEqual(len(streams), 2)
        self.assertIs(streams[0].domain_bucket, streams[1].domain_bucket)
        chunk = ("<presence from='eve@a.example/x' to='nobody@b.example' type='unavailable'/>"
                 * 200).encode()
        started = reactor.seconds()
        flooders = [Flooder(peer.transport, chunk) for peer in peers]
        # Wait (polling, at most 10 s) until both streams are being held back.
        for _ in range(200):
            if all(s.read_pauses for s in streams):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertTrue(all(s.read_pauses for s in streams))
        yield self.local_chat("during the flood")
        # alice's messages come from the flooding domain: slowed down, not lost.
        self.alice.send(element("<message to='bob@b.example' type='chat'><body>slow</body>"
                                "</message>"))
        got = yield next_stanza(self.bob, lambda s: s.name == "message", timeout=10)
        self.assertEqual(str(got.body), "slow")
        elapsed = reactor.seconds() - started
        read = sum(s.bytes_read for s in self.a_streams())
        written = sum(f.written for f in flooders)
        # Everything a.example's connections sent was read at 64 KiB/s after a 64 KiB
        # burst (plus one read of at most 64 KiB per connection before it pauses): the
        # rest waits in the peers' buffers, not in the server's memory.
        self.assertLessEqual(read, 65536 + 65536 * elapsed + 3 * 65536 + 8192)
        self.assertGreater(written, read + 65536)
        for flooder in flooders:
            flooder.stopProducing()

    @defer.inlineCallbacks
    def test_too_many_connections_for_one_domain(self):
        yield self.local_chat("first")  # a.example's own server: one stream in b
        self.alice.send(element("<message to='bob@b.example' type='chat'><body>in</body>"
                                "</message>"))
        yield next_stanza(self.bob, lambda s: s.name == "message")
        self.assertEqual(len(self.a_streams()), 1)
        for _ in range(2):
            peer = yield self.dialback_peer()
            self.assertIn("type='valid'", peer.received.decode())
            self.addCleanup(peer.transport.abortConnection)
        refused = yield self.dialback_peer()
        text = yield refused.closed
        self.assertIn("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", text)
        self.assertNotIn("type='valid'", text)
        self.assertEqual(len(self.a_streams()), 3)
        yield self.local_chat("still fine")
        self.alice.send(element("<message to='bob@b.example' type='chat'><body>again</body>"
                                "</message>"))
        got = yield next_stanza(self.bob, lambda s: s.name == "message")
        self.assertEqual(str(got.body), "again")
