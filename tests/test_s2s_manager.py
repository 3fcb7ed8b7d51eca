"""The S2S manager: one link per domain pair, its queue, and bounces (fake clock, no sockets)."""

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.s2s_fakes import FakeRouter, TLSStringTransport
from tests.test_server_e2e import element
from xmppd.s2s.manager import S2SManager
from xmppd.s2s.resolver import NoSuchServer, Resolver, Target
from xmppd.sections import LimitSettings, S2SSettings

#: A receiving server's stream header (the stream has started).
PEER_HEADER = (b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
               b"streams' xmlns:db='jabber:server:dialback' from='b.example' id='S1' "
               b"version='1.0'>")


class FakeResolver(Resolver):
    """Resolves every domain to one static endpoint, or fails as told."""

    def __init__(self):
        super().__init__()
        self.failure = None
        self.asked = []

    def resolve(self, domain):
        """One target at 10.0.0.2:5269, or the failure set."""
        self.asked.append(domain)
        if self.failure is not None:
            return defer.fail(self.failure)
        return defer.succeed([Target(domain, 5269, endpoint="tcp:host=10.0.0.2:port=5269"),
                              Target(domain, 5269, endpoint="tcp:host=10.0.0.3:port=5269")])


class ManagerTests(unittest.TestCase):
    """Queueing, reuse, bounces."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.router = FakeRouter()
        self.resolver = FakeResolver()
        self.manager = S2SManager(
            S2SSettings(max_queue=3, connect_timeout=10), LimitSettings(), self.router,
            ("a.example", "conference.a.example"), "s3cret", reactor=self.reactor,
            server_tls_options=object(), client_tls_options=object(), roots=[],
            resolver=self.resolver)

    def message(self, to="bob@b.example", sender="alice@a.example/r", kind="chat", id="m"):
        return element(f"<message to='{to}' from='{sender}' type='{kind}' id='{id}'>"
                       "<body>hi</body></message>")

    def bounced(self):
        return [(s["to"], s["type"], s.error.firstChildElement().name) for s in self.router.routed]

    def test_queued_while_connecting_then_sent_in_order(self):
        self.manager.send(self.message(id="1"))
        self.manager.send(self.message(id="2"))
        self.assertEqual(self.resolver.asked, ["b.example"])  # one link for the pair
        self.assertEqual(len(self.reactor.tcpClients), 1)
        link = self.manager.links[("a.example", "b.example")]
        self.assertEqual([s["id"] for s in link.queue], ["1", "2"])
        transport = TLSStringTransport()
        link.stream.makeConnection(transport)
        transport.take()
        self.manager.outgoing_ready(link.stream)
        out = transport.take()
        self.assertLess(out.index("id='1'"), out.index("id='2'"))
        self.assertEqual(link.queue, [])
        self.manager.send(self.message(id="3"))  # reused, written at once
        self.assertIn("id='3'", transport.take())
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.router.routed, [])

    def test_one_link_per_domain_pair(self):
        self.manager.send(self.message())
        self.manager.send(self.message(sender="room@conference.a.example/x"))
        self.manager.send(self.message(to="carol@c.example"))
        self.assertEqual(set(self.manager.links), {
            ("a.example", "b.example"), ("conference.a.example", "b.example"),
            ("a.example", "c.example")})

    def test_no_answer_in_time_bounces_remote_server_timeout(self):
        self.manager.send(self.message(id="1"))
        self.manager.send(self.message(kind="error", id="2"))  # errors are not answered
        self.reactor.advance(9)
        self.assertEqual(self.router.routed, [])
        self.reactor.advance(2)
        self.assertEqual(self.bounced(), [("alice@a.example/r", "error", "remote-server-timeout")])
        self.assertEqual(self.manager.links, {})

    def test_dns_says_no_server(self):
        self.resolver.failure = NoSuchServer("none")
        self.manager.send(self.message())
        self.assertEqual(self.bounced(),
                         [("alice@a.example/r", "error", "remote-server-not-found")])
        self.assertEqual(self.manager.links, {})

    def test_every_target_refuses(self):
        self.manager.send(self.message())
        for attempt in range(2):
            host, port, factory, _timeout, _bind = self.reactor.tcpClients[attempt]
            self.assertEqual(host, f"10.0.0.{2 + attempt}")
            factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(self.bounced(),
                         [("alice@a.example/r", "error", "remote-server-not-found")])

    def test_negotiation_failure_bounces_timeout(self):
        self.manager.send(self.message())
        link = self.manager.links[("a.example", "b.example")]
        link.stream.makeConnection(TLSStringTransport())
        self.manager.outgoing_failed(link.stream, "remote-server-timeout", "no TLS")
        self.assertEqual(self.bounced(), [("alice@a.example/r", "error", "remote-server-timeout")])

    def test_connection_lost_before_authentication(self):
        self.manager.send(self.message())
        link = self.manager.links[("a.example", "b.example")]
        link.stream.makeConnection(TLSStringTransport())
        link.stream.dataReceived(PEER_HEADER)
        link.stream.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.bounced(), [("alice@a.example/r", "error", "remote-server-timeout")])
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_closed_before_the_stream_started_tries_the_next_target(self):
        # E.g. the TLS handshake with an _xmpps-server target failed (XEP-0368).
        self.manager.send(self.message())
        link = self.manager.links[("a.example", "b.example")]
        first = link.stream
        first.makeConnection(TLSStringTransport())
        first.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.router.routed, [])
        self.assertEqual([c[0] for c in self.reactor.tcpClients], ["10.0.0.2", "10.0.0.3"])
        self.assertIsNot(link.stream, first)
        self.assertIs(self.manager.links[("a.example", "b.example")], link)
        # The last target fails the same way: now the queue bounces.
        link.stream.makeConnection(TLSStringTransport())
        link.stream.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.bounced(), [("alice@a.example/r", "error", "remote-server-timeout")])
        self.assertEqual(self.manager.links, {})

    def test_queue_limit(self):
        for n in range(4):
            self.manager.send(self.message(id=str(n)))
        self.assertEqual(self.bounced(), [("alice@a.example/r", "error", "resource-constraint")])
        self.assertEqual(len(self.manager.links[("a.example", "b.example")].queue), 3)

    def test_lost_after_authentication_reconnects_on_next_stanza(self):
        self.manager.send(self.message())
        link = self.manager.links[("a.example", "b.example")]
        link.stream.makeConnection(TLSStringTransport())
        self.manager.outgoing_ready(link.stream)
        link.stream.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.manager.links, {})
        self.manager.send(self.message())
        self.assertEqual(self.resolver.asked, ["b.example", "b.example"])
        self.assertEqual(self.router.routed, [])

    def test_stanza_from_a_domain_we_do_not_serve_is_not_sent(self):
        self.manager.send(self.message(sender="mallory@evil.example"))
        self.assertEqual(self.manager.links, {})

    def test_verification_waits_for_the_encrypted_stream(self):
        d = self.manager.verify_dialback("a.example", "b.example", "SID", "KEY")
        link = self.manager.links[("a.example", "b.example")]
        transport = TLSStringTransport()
        link.stream.makeConnection(transport)
        transport.take()
        self.assertNoResult(d)
        link.stream._verify_ready = True
        self.manager.stream_can_verify(link.stream)
        self.assertEqual(transport.take(),
                         "<db:verify from='a.example' to='b.example' id='SID'>KEY</db:verify>")
        link.stream.dataReceived(
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
            b" xmlns:db='jabber:server:dialback' from='b.example' id='X' version='1.0'>"
            b"<db:verify from='b.example' to='a.example' id='SID' type='valid'/>")
        self.assertTrue(self.successResultOf(d))

    def test_verification_fails_with_the_link(self):
        self.resolver.failure = NoSuchServer("none")
        d = self.manager.verify_dialback("a.example", "b.example", "SID", "KEY")
        self.assertEqual(self.failureResultOf(d).value.condition, "remote-server-not-found")

    def test_incoming_connection_limit(self):
        factory = self.manager.factory()
        streams = []
        for _ in range(3):
            stream = factory.buildProtocol(None)
            stream.makeConnection(TLSStringTransport())
            streams.append(stream)
        self.manager.settings = S2SSettings(max_incoming=3)
        self.assertIsNone(factory.buildProtocol(None))
        streams[0].connectionLost(Failure(ConnectionRefusedError()))
        self.assertIsNotNone(factory.buildProtocol(None))

    def authenticated_stream(self, factory, remote):
        stream = factory.buildProtocol(None)
        stream.makeConnection(TLSStringTransport())
        stream.authenticated.add(remote)
        stream.domain_authenticated(remote)
        return stream

    def test_incoming_limit_per_domain(self):
        self.manager.settings = S2SSettings(max_incoming_per_domain=2)
        factory = self.manager.factory()
        first = self.authenticated_stream(factory, "c.example")
        second = self.authenticated_stream(factory, "c.example")
        self.authenticated_stream(factory, "d.example")
        newcomer = factory.buildProtocol(None)
        newcomer.makeConnection(TLSStringTransport())
        self.assertTrue(self.manager.incoming_limit_reached(newcomer, "c.example"))
        self.assertFalse(self.manager.incoming_limit_reached(newcomer, "d.example"))
        # A stream is not counted against itself.
        self.assertFalse(self.manager.incoming_limit_reached(second, "c.example"))
        first.connectionLost(Failure(ConnectionRefusedError()))
        self.assertFalse(self.manager.incoming_limit_reached(newcomer, "c.example"))

    def test_read_bucket_shared_by_a_domain_and_forgotten_with_its_last_stream(self):
        self.manager.settings = S2SSettings(domain_read_rate=100, domain_read_burst=200)
        factory = self.manager.factory()
        first = self.authenticated_stream(factory, "c.example")
        second = self.authenticated_stream(factory, "c.example")
        other = self.authenticated_stream(factory, "d.example")
        self.assertIsNotNone(first.domain_bucket)
        self.assertIs(first.domain_bucket, second.domain_bucket)
        self.assertIsNot(first.domain_bucket, other.domain_bucket)
        self.assertEqual((first.domain_bucket.rate, first.domain_bucket.burst), (100, 200))
        first.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(set(self.manager.domain_buckets), {"c.example", "d.example"})
        second.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(set(self.manager.domain_buckets), {"d.example"})

    def test_stanza_bucket_shared_by_a_domain_and_forgotten_with_its_last_stream(self):
        self.manager.settings = S2SSettings(domain_stanza_rate=5, domain_stanza_burst=7)
        factory = self.manager.factory()
        first = self.authenticated_stream(factory, "c.example")
        second = self.authenticated_stream(factory, "c.example")
        self.assertIs(first.domain_stanza_bucket, second.domain_stanza_bucket)
        self.assertEqual((first.domain_stanza_bucket.rate, first.domain_stanza_bucket.burst),
                         (5, 7))
        first.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(set(self.manager.domain_stanza_buckets), {"c.example"})
        second.connectionLost(Failure(ConnectionRefusedError()))
        self.assertEqual(self.manager.domain_stanza_buckets, {})
        off = S2SSettings(domain_stanza_rate=0)
        self.manager.settings = off
        self.assertIsNone(self.authenticated_stream(factory, "c.example").domain_stanza_bucket)

    def test_no_domain_bucket_when_off(self):
        self.manager.settings = S2SSettings(domain_read_rate=0)
        stream = self.authenticated_stream(self.manager.factory(), "c.example")
        self.assertIsNone(stream.domain_bucket)
        self.assertEqual(self.manager.domain_buckets, {})

    def test_direct_tls_factory(self):
        stream = self.manager.factory(direct_tls=True).buildProtocol(None)
        transport = TLSStringTransport()
        stream.makeConnection(transport)
        self.assertTrue(stream.direct_tls)
        self.assertIs(transport.tls_started, self.manager.server_tls_options)
        self.assertFalse(self.manager.factory().buildProtocol(None).direct_tls)
        self.manager.server_tls_options = None
        self.assertRaises(ValueError, self.manager.factory, direct_tls=True)

    def test_shutdown_bounces_what_waits(self):
        self.manager.startService()
        self.manager.send(self.message())
        self.manager.stopService()
        self.assertEqual(self.bounced(), [("alice@a.example/r", "error", "remote-server-timeout")])


class ALPNTests(unittest.TestCase):
    """ALPN on the S2S listener: xmpp-server when offered, else none (never a failed handshake)."""

    def test_selection(self):
        from OpenSSL import SSL

        from xmppd.s2s.manager import select_alpn

        self.assertEqual(select_alpn(None, [b"h2", b"xmpp-server"]), b"xmpp-server")
        self.assertIs(select_alpn(None, [b"h2"]), SSL.NO_OVERLAPPING_PROTOCOLS)
