"""xmppd.s2s.status: an S2S stream as ``xmppdctl s2s`` shows it (fake transports, fake clock)."""

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from tests.s2s_fakes import FakeRouter, TLSStringTransport
from tests.test_s2s_stream import header
from xmppd.s2s.manager import S2SManager
from xmppd.s2s.status import S2SConnection, connection_status, tls_version
from xmppd.s2s.stream import S2SStream
from xmppd.sections import LimitSettings, S2SSettings


class FakeHandle:
    """The OpenSSL connection of a TLS transport: its protocol version."""

    def __init__(self, version):
        self.version = version

    def get_protocol_version_name(self):
        """As pyOpenSSL."""
        return self.version


class HandleTransport(TLSStringTransport):
    """A transport whose handle tells a TLS version."""

    def __init__(self, version="TLSv1.3"):
        super().__init__()
        self.handle = FakeHandle(version)

    def getHandle(self):
        """The fake OpenSSL connection."""
        return self.handle


class StatusTests(unittest.TestCase):
    """Direction, domains, TLS, authentication, age and stanza counts of real streams."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1000)
        self.manager = S2SManager(
            S2SSettings(), LimitSettings(), FakeRouter(), ("b.example",), "s3cret",
            reactor=self.reactor, server_tls_options=object(), client_tls_options=object(),
            roots=[])
        self.manager.check_certificate = lambda transport, domain: "self-signed"

    def incoming(self, transport=None):
        """A receiving stream from a.example, through STARTTLS and dialback."""
        transport = transport or HandleTransport()
        stream = S2SStream(self.manager, initiating=False)
        stream.makeConnection(transport)
        stream.dataReceived(header(from_="a.example", to="b.example").encode())
        stream.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        stream.dataReceived(header(from_="a.example", to="b.example").encode())
        return stream, transport

    def test_incoming_before_and_after_dialback(self):
        stream, transport = self.incoming()
        self.reactor.advance(20)
        [before] = self.manager.connections()
        self.assertEqual(before, S2SConnection(
            direction="in", local="b.example", remote=("a.example",), tls=True,
            tls_version="TLSv1.3", auth="none", connected=20.0, stanzas_in=0, stanzas_out=0))
        # Two domains authenticate by dialback (their servers confirm the keys).
        self.manager.verify_dialback = lambda local, remote, sid, key: defer.succeed(True)
        for domain in ("a.example", "c.example"):
            stream.dataReceived(f"<db:result from='{domain}' to='b.example'>KEY</db:result>"
                                .encode())
        for n in range(2):
            stream.dataReceived(f"<message from='x@a.example' to='y@b.example' id='{n}'/>"
                                .encode())
        self.reactor.advance(500)
        [after] = self.manager.connections()
        self.assertEqual((after.remote, after.auth, after.connected, after.stanzas_in,
                          after.stanzas_out),
                         (("a.example", "c.example"), "dialback", 520.0, 2, 0))

    def test_outgoing_sasl_external_and_stanzas_out(self):
        stream = S2SStream(self.manager, initiating=True, local="b.example",
                           remote="a.example")
        stream.makeConnection(HandleTransport("TLSv1.2"))
        stream.tls = True
        self.assertEqual(connection_status(stream, self.reactor.seconds()).auth, "none")
        stream._authenticated("EXTERNAL")
        stream.send_stanza(_message())
        status = connection_status(stream, self.reactor.seconds() + 5)
        self.assertEqual((status.direction, status.local, status.remote, status.tls_version,
                          status.auth, status.connected, status.stanzas_out),
                         ("out", "b.example", ("a.example",), "TLSv1.2", "SASL EXTERNAL", 5.0,
                          1))

    def test_plain_stream_has_no_tls_version(self):
        stream = S2SStream(self.manager, initiating=False)
        stream.makeConnection(HandleTransport())
        status = connection_status(stream, self.reactor.seconds())
        self.assertEqual((status.tls, status.tls_version, status.remote, status.local),
                         (False, "", (), ""))

    def test_tls_version_of_odd_transports(self):
        self.assertEqual(tls_version(TLSStringTransport()), "")  # no getHandle
        self.assertEqual(tls_version(HandleTransport("Unknown")), "")  # handshake not done

    def test_connections_sorted_outgoing_first(self):
        self.incoming()
        out = S2SStream(self.manager, initiating=True, local="b.example", remote="z.example")
        out.makeConnection(HandleTransport())
        self.assertEqual([(c.direction, c.remote) for c in self.manager.connections()],
                         [("out", ("z.example",)), ("in", ("a.example",))])

    def test_replace_tls_reaches_new_streams_only(self):
        old = self.manager.server_tls_options
        _, first = self.incoming()
        self.assertIs(first.tls_started, old)
        new_server, new_client = object(), object()
        self.manager.replace_tls(new_server, new_client)
        _, second = self.incoming()
        self.assertIs(second.tls_started, new_server)
        self.assertIs(first.tls_started, old)
        self.assertIs(self.manager.client_tls_options, new_client)


def _message():
    from tests.test_server_e2e import element

    return element("<message from='x@b.example' to='y@a.example'/>")
