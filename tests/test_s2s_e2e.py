"""Federation end to end: two xmppd servers on loopback, users chatting across them.

a.example listens on 127.0.0.1 and b.example on 127.0.0.2, each with its
own generated self-signed certificate (so the servers authenticate each
other by dialback over TLS); each knows the other's S2S port through its
static routes, set once both listen (ports are 0).
"""

import datetime
from pathlib import Path

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from tests.support import make_test_certificate, make_test_config, start_server
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
        yield self.a.create_user("alice", "pw")
        yield self.b.create_user("bob", "pw")
        self.alice = yield login(self.a, "alice", "127.0.0.1")
        self.bob = yield login(self.b, "bob", "127.0.0.2")
        self.addCleanup(self.alice.disconnect)
        self.addCleanup(self.bob.disconnect)


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

    def dataReceived(self, data):
        """Collect."""
        self.received += data

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
