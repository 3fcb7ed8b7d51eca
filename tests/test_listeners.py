"""Tests for xmppd.listeners: ``tcp:PORT`` on IPv4 and IPv6, other descriptions as before.

Real loopback sockets on port 0; every port and connection is closed before
the test ends.
"""

import errno
import socket

from twisted.internet import defer, endpoints, reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from xmppd import listeners, logs


def _ipv6_loopback_problem():
    """Why IPv6 loopback cannot be tested here, or None if it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6 support"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError as e:
        return f"cannot bind ::1 on this machine (IPv6 disabled?): {e}"
    return None


#: Set (to the reason) when this machine cannot do IPv6 on loopback.
NO_IPV6 = _ipv6_loopback_problem()


class Accepted(Protocol):
    """A server-side connection; ``lost`` fires when it closes."""

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.factory.accepted.put(self)

    def connectionLost(self, reason):
        self.lost.callback(None)


class Accepting(Factory):
    """Queues accepted connections; ``stopped`` fires when its last port has closed."""

    protocol = Accepted

    def __init__(self):
        self.accepted = defer.DeferredQueue()
        self.stopped = defer.Deferred()

    def stopFactory(self):
        if not self.stopped.called:
            self.stopped.callback(None)


class Client(Protocol):
    """A client connection; ``lost`` fires when it closes."""

    def __init__(self):
        self.lost = defer.Deferred()

    def connectionLost(self, reason):
        self.lost.callback(None)


class ListenerTestCase(unittest.TestCase):
    """Listens with real sockets and stops every port at the end."""

    timeout = 10

    def listen(self, description, factory=None):
        """The ports of ``listeners.listen`` (which must have fired synchronously)."""
        factory = factory if factory is not None else Accepting()
        ports = self.successResultOf(listeners.listen(reactor, description, factory))
        self.addCleanup(listeners.stop_listening, ports)
        return ports

    @defer.inlineCallbacks
    def assert_accepts(self, host, port, factory):
        """Connect to host:port; the server accepts; both ends are closed again."""
        if ":" in host:
            endpoint = endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=5)
        else:
            endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=5)
        client = yield endpoints.connectProtocol(endpoint, Client())
        server = yield factory.accepted.get()
        self.assertEqual(server.transport.getHost().port, port)
        self.assertEqual(server.transport.getPeer().host, host)
        client.transport.loseConnection()
        yield defer.gatherResults([client.lost, server.lost])

    def capture_log(self):
        """xmppd's events from now on (at info level or above)."""
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("info")
        return events


class DualStackTests(ListenerTestCase):
    """``tcp:PORT`` without an interface listens on 0.0.0.0 and on [::] (IPv6 only)."""

    def test_tcp_0_binds_both_families_on_one_port(self):
        if NO_IPV6:
            raise unittest.SkipTest(NO_IPV6)
        ipv4, ipv6 = self.listen("tcp:0")
        number = ipv4.getHost().port
        self.assertNotEqual(number, 0)
        self.assertEqual(ipv4.getHost(), IPv4Address("TCP", "0.0.0.0", number))
        self.assertEqual(ipv6.getHost(), IPv6Address("TCP", "::", number))
        self.assertEqual(listeners.describe_ports([ipv4, ipv6]), f"0.0.0.0:{number}, [::]:{number}")
        option = ipv6.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        self.assertEqual(option, 1)

    @defer.inlineCallbacks
    def test_tcp_0_accepts_on_127_0_0_1(self):
        factory = Accepting()
        ports = self.listen("tcp:0", factory)
        yield self.assert_accepts("127.0.0.1", ports[0].getHost().port, factory)

    @defer.inlineCallbacks
    def test_tcp_0_accepts_on_ipv6_loopback_on_the_same_port(self):
        if NO_IPV6:
            raise unittest.SkipTest(NO_IPV6)
        factory = Accepting()
        ports = self.listen("tcp:0", factory)
        number = ports[0].getHost().port
        yield self.assert_accepts("127.0.0.1", number, factory)
        yield self.assert_accepts("::1", number, factory)

    def test_backlog_is_kept_on_both_ports(self):
        ports = self.listen("tcp:0:backlog=7")
        self.assertIsInstance(ports[0].getHost(), IPv4Address)
        self.assertIn(len(ports), (1, 2) if NO_IPV6 else (2,))
        self.assertEqual([port.backlog for port in ports], [7] * len(ports))

    def test_default_backlog(self):
        """Without a backlog, a listener queues DEFAULT_BACKLOG connections, not Twisted's 50."""
        ports = self.listen("tcp:0") + self.listen("tcp:0:interface=127.0.0.1")
        self.assertEqual({port.backlog for port in ports}, {listeners.DEFAULT_BACKLOG})
        [positional] = self.listen("tcp:0:127.0.0.1:12")
        self.assertEqual(positional.backlog, 12)

    def test_with_backlog(self):
        with_backlog = listeners.with_backlog
        self.assertEqual(with_backlog("tcp:5222"), "tcp:5222:backlog=1024")
        self.assertEqual(with_backlog("tcp:5222:backlog=5"), "tcp:5222:backlog=5")
        self.assertEqual(with_backlog("tcp6:5222:interface=\\:\\:1"),
                         "tcp6:5222:interface=\\:\\:1:backlog=1024")
        self.assertEqual(with_backlog("ssl:443:privateKey=k.pem"),
                         "ssl:443:privateKey=k.pem:backlog=1024")
        for unchanged in ("unix:/run/x.sock", "systemd:domain=INET6:index=0", "tcp:1:a:7"):
            self.assertEqual(with_backlog(unchanged), unchanged)

    def test_port_in_use_is_cannot_listen_error(self):
        taken = reactor.listenTCP(0, Accepting())
        self.addCleanup(taken.stopListening)
        number = taken.getHost().port
        d = listeners.listen(reactor, f"tcp:{number}", Accepting())
        failure = self.failureResultOf(d, CannotListenError)
        self.assertEqual(failure.value.port, number)

    @defer.inlineCallbacks
    def test_ipv6_port_in_use_fails_and_releases_the_ipv4_port(self):
        if NO_IPV6:
            raise unittest.SkipTest(NO_IPV6)
        taken = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::", 0))
        taken.listen(1)
        number = taken.getsockname()[1]
        factory = Accepting()
        failure = self.failureResultOf(
            listeners.listen(reactor, f"tcp:{number}", factory), CannotListenError
        )
        self.assertEqual(failure.value.socketError.errno, errno.EADDRINUSE)
        yield factory.stopped  # the IPv4 port of the pair has closed
        again = reactor.listenTCP(number, Accepting())
        yield again.stopListening()

    def test_tcp_0_picks_another_port_if_the_ipv6_one_is_taken(self):
        real = listeners._listen_ipv6
        tried = []

        def taken_once(reactor_, port, backlog, factory):
            tried.append(port)
            if len(tried) == 1:
                raise CannotListenError("::", port, OSError(errno.EADDRINUSE, "in use"))
            return real(reactor_, port, backlog, factory)

        self.patch(listeners, "_listen_ipv6", taken_once)
        factory = Accepting()
        ports = self.listen("tcp:0", factory)
        self.assertEqual(len(tried), 2)
        numbers = {port.getHost().port for port in ports}
        self.assertEqual(numbers, {tried[1]})
        self.assertEqual(factory.numPorts, len(ports) + 1)  # the first try's IPv4 port closes

    @defer.inlineCallbacks
    def test_without_ipv6_only_ipv4_listens_and_a_warning_is_logged(self):
        for code in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            events = self.capture_log()

            def no_ipv6(port, code=code):
                raise OSError(code, "IPv6 is disabled here")

            self.patch(listeners.IPv6OnlyPort, "createInternetSocket", no_ipv6)
            factory = Accepting()
            ports = self.listen("tcp:0", factory)
            self.assertEqual(len(ports), 1)
            number = ports[0].getHost().port
            self.assertEqual(ports[0].getHost(), IPv4Address("TCP", "0.0.0.0", number))
            warnings = [e for e in events if e.get("log_namespace") == "xmppd.listeners"]
            self.assertEqual(len(warnings), 1)
            self.assertEqual(warnings[0]["log_level"], LogLevel.warn)
            self.assertEqual(
                formatEvent(warnings[0]),
                "IPv6 is not available (IPv6 is disabled here): tcp:0 listens on "
                f"0.0.0.0:{number} (IPv4) only",
            )
            yield self.assert_accepts("127.0.0.1", number, factory)
            yield listeners.stop_listening(ports)


class PassThroughTests(ListenerTestCase):
    """Other descriptions are ``serverFromString(...).listen(...)``: one port."""

    @defer.inlineCallbacks
    def test_explicit_interface_is_one_ipv4_port(self):
        factory = Accepting()
        ports = self.listen("tcp:0:interface=127.0.0.1:backlog=9", factory)
        self.assertEqual(len(ports), 1)
        number = ports[0].getHost().port
        self.assertEqual(ports[0].getHost(), IPv4Address("TCP", "127.0.0.1", number))
        self.assertEqual(ports[0].backlog, 9)
        yield self.assert_accepts("127.0.0.1", number, factory)

    @defer.inlineCallbacks
    def test_explicit_interface_refuses_ipv6(self):
        if NO_IPV6:
            raise unittest.SkipTest(NO_IPV6)
        (port,) = self.listen("tcp:0:interface=127.0.0.1")
        endpoint = endpoints.TCP6ClientEndpoint(reactor, "::1", port.getHost().port, timeout=5)
        yield self.assertFailure(
            endpoints.connectProtocol(endpoint, Client()), ConnectionRefusedError
        )

    @defer.inlineCallbacks
    def test_tcp6_is_one_ipv6_port(self):
        if NO_IPV6:
            raise unittest.SkipTest(NO_IPV6)
        factory = Accepting()
        ports = self.listen(r"tcp6:0:interface=\:\:1", factory)
        self.assertEqual(len(ports), 1)
        number = ports[0].getHost().port
        self.assertEqual(listeners.describe_ports(ports), f"[::1]:{number}")
        yield self.assert_accepts("::1", number, factory)

    def test_unix_socket(self):
        path = self.mktemp()
        ports = self.listen(f"unix:{path}")
        self.assertEqual(len(ports), 1)
        self.assertEqual(listeners.describe_ports(ports), path)

    def test_description_errors_raise_as_server_from_string_does(self):
        self.assertRaises(ValueError, listeners.listen, reactor, "tcp:notaport", Accepting())
        self.assertRaises(ValueError, listeners.listen, reactor, "TCP:5222", Accepting())
        self.assertRaises(TypeError, listeners.listen, reactor, "tcp:5222:foo=1", Accepting())
        # systemd passed no socket (no $LISTEN_FDS in tests).
        self.assertRaises(
            IndexError, listeners.listen, reactor, "systemd:domain=INET:index=0", Accepting()
        )


class FakeReactorTests(unittest.TestCase):
    """With a reactor that is not the posix one, both halves go through listenTCP."""

    def test_memory_reactor(self):
        fake = MemoryReactor()
        factory = Accepting()
        ports = self.successResultOf(listeners.listen(fake, "tcp:5222:backlog=9", factory))
        self.assertEqual(
            fake.tcpServers, [(5222, factory, 9, ""), (5222, factory, 9, "::")]
        )
        self.assertEqual(listeners.describe_ports(ports), "0.0.0.0:5222, [::]:5222")

    def test_memory_reactor_explicit_interface(self):
        fake = MemoryReactor()
        factory = Accepting()
        ports = self.successResultOf(
            listeners.listen(fake, "tcp:5222:interface=127.0.0.1", factory)
        )
        self.assertEqual(len(ports), 1)
        self.assertEqual(fake.tcpServers, [(5222, factory, listeners.DEFAULT_BACKLOG, "127.0.0.1")])


class DescriptionTests(unittest.TestCase):
    """Which descriptions are dual-stack, and with what port and backlog."""

    def test_dual_stack_descriptions(self):
        cases = {
            "tcp:5222": (5222, 50),
            "tcp:0": (0, 50),
            "tcp:5222:backlog=10": (5222, 10),
            "tcp:port=5222": (5222, 50),
            "tcp:backlog=5:port=5222": (5222, 5),
        }
        for description, expected in cases.items():
            self.assertEqual(listeners._dual_stack(description), expected, description)

    def test_single_port_descriptions(self):
        for description in (
            "tcp:5222:interface=127.0.0.1",
            "tcp:5222:interface=0.0.0.0",
            "tcp:5222:interface=",
            r"tcp:5222:interface=\:\:1",
            "tcp:5222:127.0.0.1",
            "tcp:5222:127.0.0.1:10",
            "tcp6:5222",
            "ssl:5223:privateKey=k.pem:certKey=c.pem",
            "unix:/run/xmppd.sock",
            "systemd:domain=INET6:index=0",
        ):
            self.assertIsNone(listeners._dual_stack(description), description)

    def test_split_matches_twisted(self):
        for description in (
            "tcp:5222",
            "tcp:5222:backlog=10:interface=127.0.0.1",
            r"tcp6:5222:interface=\:\:1",
            r"ssl:443:privateKey=C\:/key.pem:certKey=a=b",
            "unix:/tmp/x:mode=660",
            "systemd:domain=INET6:index=0",
            "",
        ):
            self.assertEqual(
                listeners._split(description), endpoints._parse(description), description
            )


class DescribeTests(unittest.TestCase):
    """Addresses for log lines."""

    def test_addresses(self):
        self.assertEqual(listeners.describe_address(IPv4Address("TCP", "0.0.0.0", 5222)),
                         "0.0.0.0:5222")
        self.assertEqual(listeners.describe_address(IPv6Address("TCP", "::", 5222)), "[::]:5222")
        self.assertEqual(listeners.describe_address(UNIXAddress(b"/run/x.sock")), "/run/x.sock")
        self.assertEqual(listeners.describe_ports([]), "")
