"""xmppd.transport: output gathered per reactor turn and sent straight to the socket.

Real loopback sockets (port 0) and the real reactor: what is tested is how
bytes reach a peer through the kernel, with and without TLS.
"""

from __future__ import annotations

import io
import socket

from twisted.internet import defer, protocol, reactor, ssl, task, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.epollreactor import EPollReactor
from twisted.protocols.basic import FileSender
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial import unittest

from tests.support import make_test_certificate
from xmppd import listeners, transport


class Peer(protocol.Protocol):
    """Either end: collects what it receives; ``wait(n)`` fires once n bytes are in."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred = defer.Deferred()
        self._waiting: list[tuple[int, defer.Deferred]] = []
        self.on_data = None

    def dataReceived(self, data: bytes) -> None:
        """Collect, fire the waiters that have their bytes, then the test's hook."""
        self.received += data
        ready = [w for w in self._waiting if len(self.received) >= w[0]]
        self._waiting = [w for w in self._waiting if len(self.received) < w[0]]
        for _, d in ready:
            d.callback(self.received)
        if self.on_data is not None:
            self.on_data(data)

    def connectionLost(self, reason: object) -> None:
        """Fire ``lost`` with what was received."""
        self.lost.callback(self.received)

    def wait(self, size: int) -> defer.Deferred:
        """Fires with everything received once at least ``size`` bytes are in."""
        if len(self.received) >= size:
            return defer.succeed(self.received)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append((size, d))
        return d


class ServerFactory(protocol.Factory):
    """Hands out :class:`Peer` server ends, each also put in ``accepted`` (a queue)."""

    def __init__(self) -> None:
        self.accepted: defer.DeferredQueue = defer.DeferredQueue()

    def buildProtocol(self, addr: object) -> Peer:
        """A new server end."""
        peer = Peer()
        self.accepted.put(peer)
        return peer


class TransportTestCase(unittest.TestCase):
    """A listener made by :func:`xmppd.listeners.listen` and clients for it."""

    @defer.inlineCallbacks
    def setUp(self):
        self.factory = ServerFactory()
        ports = yield listeners.listen(reactor, "tcp:0:interface=127.0.0.1", self.factory)
        self.port = ports[0]
        self.addCleanup(self.port.stopListening)

    @defer.inlineCallbacks
    def connect(self):
        """A client connected to the listener, and the server end of it."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = yield endpoint.connect(protocol.Factory.forProtocol(Peer))
        self.addCleanup(client.transport.abortConnection)
        server = yield self.factory.accepted.get()
        return client, server


class BatchedWriteTests(TransportTestCase):
    """Plain TCP."""

    def test_listeners_hand_out_batched_connections(self):
        """Every TCP port of listeners.listen gives BatchedServer connections."""
        self.assertIs(self.port.transport, transport.BatchedServer)

        @defer.inlineCallbacks
        def check():
            _, server = yield self.connect()
            self.assertIsInstance(server.transport, transport.BatchedServer)

        return check()

    @defer.inlineCallbacks
    def test_nagle_is_off(self):
        """Output is gathered per turn already: Nagle's algorithm would only delay it."""
        _, server = yield self.connect()
        self.assertTrue(server.transport.getTcpNoDelay())

    @defer.inlineCallbacks
    def test_one_send_per_turn_without_the_reactor(self):
        """Writes of one turn leave in one send(), with no writability event registered."""
        client, server = yield self.connect()
        conn = server.transport
        sends: list[bytes] = []
        real_send = conn.writeSomeData

        def counting(data):
            sends.append(bytes(data))
            return real_send(data)

        conn.writeSomeData = counting
        registered: list[bool] = []
        real_start = conn.startWriting
        conn.startWriting = lambda: (registered.append(True), real_start())
        for i in range(10):
            conn.write(b"<chunk n='%d'/>" % i)
        self.assertEqual(sends, [], "nothing leaves before the end of the turn")
        received = yield client.wait(10 * len(b"<chunk n='0'/>"))
        self.assertEqual(received, b"".join(b"<chunk n='%d'/>" % i for i in range(10)))
        self.assertEqual(sends, [received])
        self.assertEqual(registered, [], "no writability event was needed")

    @defer.inlineCallbacks
    def test_a_full_socket_falls_back_to_twisteds_buffer_in_order(self):
        """What the kernel does not take is queued; later writes go behind it."""
        client, server = yield self.connect()
        conn = server.transport
        client.transport.pauseProducing()  # the client stops reading: the socket fills
        big = bytes(range(256)) * (16 * 1024)  # 4 MiB, more than the socket buffers hold
        conn.write(big)
        yield deferLater(0)
        self.assertTrue(conn.dataBuffer or conn._tempDataBuffer, "part of it is queued")
        self.assertIn(conn, reactor.getWriters())
        conn.write(b"tail")
        yield deferLater(0)
        client.transport.resumeProducing()
        received = yield client.wait(len(big) + 4)
        self.assertEqual(len(received), len(big) + 4)
        self.assertTrue(received == big + b"tail")

    @defer.inlineCallbacks
    def received_when_closed(self, close: str, *chunks: bytes):
        """What the client gets when the server writes ``chunks`` and closes in one turn."""
        client, server = yield self.connect()
        for chunk in chunks:
            server.transport.write(chunk)
        getattr(server.transport, close)()
        received = yield client.lost
        return received

    @defer.inlineCallbacks
    def test_lose_connection_writes_what_was_gathered_first(self):
        """Writes followed by loseConnection in the same turn all arrive, then the close."""
        received = yield self.received_when_closed(
            "loseConnection", b"<stream:error/>", b"</stream:stream>")
        self.assertEqual(received, b"<stream:error/></stream:stream>")

    @defer.inlineCallbacks
    def test_abort_drops_what_was_gathered(self):
        """abortConnection drops buffered data: what was gathered in the turn too."""
        received = yield self.received_when_closed("abortConnection", b"never sent")
        self.assertEqual(received, b"")

    @defer.inlineCallbacks
    def test_large_output_is_handed_on_at_once(self):
        """Gathering stops at FLUSH_AT bytes: a bigger write leaves within the turn."""
        client, server = yield self.connect()
        conn = server.transport
        conn.write(b"a")
        conn.write(b"b" * transport.FLUSH_AT)
        self.assertIsNone(conn._gathered)
        received = yield client.wait(transport.FLUSH_AT + 1)
        self.assertEqual(received, b"a" + b"b" * transport.FLUSH_AT)

    @defer.inlineCallbacks
    def test_text_is_refused(self):
        """Like every Twisted transport, a str is a TypeError, not silently encoded."""
        _, server = yield self.connect()
        self.assertRaises(TypeError, server.transport.write, "text")

    @defer.inlineCallbacks
    def test_a_pull_producer_is_paced_by_twisted(self):
        """A connection with a producer writes through Twisted's buffer and resumes it."""
        client, server = yield self.connect()
        payload = b"x" * (1024 * 1024)
        sent = FileSender().beginFileTransfer(io.BytesIO(payload), server.transport)
        yield sent
        received = yield client.wait(len(payload))
        self.assertEqual(len(received), len(payload))

    @defer.inlineCallbacks
    def test_one_failing_connection_does_not_stop_the_others(self):
        """A flush that raises aborts that connection (logged); the next one is written."""
        first_client, first = yield self.connect()
        second_client, second = yield self.connect()

        def broken():
            raise RuntimeError("boom")

        first.transport.flush_output = broken
        first.transport.write(b"lost")
        second.transport.write(b"kept")
        received = yield second_client.wait(4)
        self.assertEqual(received, b"kept")
        yield first_client.lost
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_other_ports_are_left_alone(self):
        """batched() changes only plain TCP ports."""
        port = reactor.listenUNIX(self.mktemp(), ServerFactory())
        self.addCleanup(port.stopListening)
        self.assertIs(transport.batched(port), port)
        self.assertIsNot(port.transport, transport.BatchedServer)
        self.assertIs(tcp.Port.transport, tcp.Server)


class TLSTests(TransportTestCase):
    """STARTTLS on a batched connection."""

    @defer.inlineCallbacks
    def secured(self, on_application_data):
        """A client and the server's connection after STARTTLS.

        The server writes ``<proceed/>`` and starts TLS in the same turn (as
        c2s does), so the gathered ``<proceed/>`` must leave in the clear;
        what the client sends over TLS then goes to ``on_application_data``.
        """
        cert, key = make_test_certificate(self)
        options = ssl.PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes()).options()
        client, server = yield self.connect()
        conn = server.transport

        def server_data(data):
            if data == b"<starttls/>":
                conn.write(b"<proceed/>")
                conn.startTLS(options)
            else:
                on_application_data(conn, data)

        server.on_data = server_data
        client.transport.write(b"<starttls/>")
        received = yield client.wait(len(b"<proceed/>"))
        self.assertEqual(received, b"<proceed/>")
        client.received = b""
        client.transport.startTLS(ssl.CertificateOptions())
        return client, conn

    @defer.inlineCallbacks
    def test_starttls_after_a_gathered_proceed(self):
        """<proceed/> written in the same turn as startTLS leaves in the clear, then TLS works."""

        def echo(conn, data):
            conn.write(b"pong:")
            conn.write(data)

        client, conn = yield self.secured(echo)
        client.transport.write(b"ping")
        received = yield client.wait(len(b"pong:ping"))
        self.assertEqual(received, b"pong:ping")
        self.assertTrue(conn.TLS)
        self.assertNotIn(conn, reactor.getWriters())

    @defer.inlineCallbacks
    def test_nothing_leaves_an_aborted_tls_connection(self):
        """TLS records made after an abort are dropped, not sent at once."""

        def abort_then_write(conn, data):
            conn.abortConnection()
            TLSMemoryBIOProtocol.write(conn.protocol, b"too late")

        client, _ = yield self.secured(abort_then_write)
        client.transport.write(b"go")
        received = yield client.lost
        self.assertEqual(received, b"")

    @defer.inlineCallbacks
    def test_tls_close_delivers_gathered_output(self):
        """Over TLS, output written right before loseConnection arrives before the close."""

        def close(conn, data):
            conn.write(b"</stream:stream>")
            conn.loseConnection()

        client, _ = yield self.secured(close)
        client.transport.write(b"bye")
        received = yield client.lost
        self.assertEqual(received, b"</stream:stream>")


def deferLater(seconds: float) -> defer.Deferred:
    """A Deferred firing after ``seconds`` on the real reactor (0: the next turn)."""
    return task.deferLater(reactor, seconds, lambda: None)


class _Reader:
    """A selectable on one end of a socket pair: records reads, or raises."""

    def __init__(self, sock, fail: bool = False) -> None:
        self.sock = sock
        self.fail = fail
        self.read: list[bytes] = []
        self.lost: list[object] = []

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self.sock.fileno()

    def logPrefix(self) -> str:
        """What Twisted's log context would have named."""
        return "reader"

    def doRead(self) -> None:
        """Read what is there (or fail, as a broken protocol would)."""
        if self.fail:
            raise RuntimeError("broken reader")
        self.read.append(self.sock.recv(100))

    def connectionLost(self, reason: object) -> None:
        """Note how it was dropped."""
        self.lost.append(reason)


class _BadLoss(_Reader):
    """A reader whose connectionLost raises after a failed read."""

    def connectionLost(self, reason: object) -> None:
        """Fail while being dropped."""
        super().connectionLost(reason)
        raise ValueError("connectionLost failed")


class LeanEventDispatchTests(unittest.TestCase):
    """``lean_event_dispatch``: the epoll reactor's events without the legacy log context.

    A fresh (not installed, not running) ``EPollReactor`` is driven one
    iteration at a time over a real socket pair.
    """

    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.addCleanup(self.reactor._poller.close)
        self.addCleanup(self.reactor.waker.connectionLost, None)
        self.ours, self.theirs = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(self.theirs.close)
        self.contexts: list[object] = []
        original = transport.epollreactor.log.callWithLogger

        def counting(*args, **kwargs):
            self.contexts.append(args[0])
            return original(*args, **kwargs)

        self.patch(transport.epollreactor.log, "callWithLogger", counting)

    def test_events_reach_the_connection_without_a_log_context(self) -> None:
        """A ready reader is read, once per iteration, and no log context is set."""
        reader = _Reader(self.ours)
        self.reactor.addReader(reader)
        # Twisted's own dispatch sets the context (what the change removes).
        self.theirs.send(b"one")
        self.reactor.doIteration(0)
        self.assertEqual((reader.read, self.contexts), ([b"one"], [reader]))

        self.assertTrue(transport.lean_event_dispatch(self.reactor))
        self.theirs.send(b"two")
        self.reactor.doIteration(0)
        self.assertEqual((reader.read, self.contexts), ([b"one", b"two"], [reader]))
        self.reactor.doIteration(0)  # nothing ready: nothing read
        self.assertEqual(reader.read, [b"one", b"two"])

    def test_a_failing_connection_is_logged_and_dropped(self) -> None:
        """What a connection raises is logged and that connection dropped, as before."""
        transport.lean_event_dispatch(self.reactor)
        reader = _Reader(self.ours, fail=True)
        self.reactor.addReader(reader)
        self.theirs.send(b"x")
        self.reactor.doIteration(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(reader.lost), 1)
        self.assertNotIn(reader, self.reactor.getReaders())

    def test_other_reactors_are_left_alone(self) -> None:
        """Only Twisted's EPollReactor itself is changed: not fakes, not subclasses."""
        class Sub(EPollReactor):
            pass

        clock = task.Clock()
        self.assertFalse(transport.lean_event_dispatch(clock))
        sub = Sub()
        self.addCleanup(sub._poller.close)
        self.addCleanup(sub.waker.connectionLost, None)
        self.assertFalse(transport.lean_event_dispatch(sub))
        self.assertNotIn("doIteration", vars(sub))

    def test_a_failing_drop_does_not_stop_the_others(self) -> None:
        """A raising connectionLost is logged, not raised; the next ready connection still runs."""
        transport.lean_event_dispatch(self.reactor)
        second, peer = socket.socketpair()
        self.addCleanup(second.close)
        self.addCleanup(peer.close)
        bad = _BadLoss(self.ours, fail=True)
        good = _Reader(second)
        self.reactor.addReader(bad)
        self.reactor.addReader(good)
        self.theirs.send(b"x")
        peer.send(b"y")
        self.reactor.doIteration(0)
        self.assertEqual(good.read, [b"y"])
        self.assertEqual(len(bad.lost), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
