"""TCP connections that write once per reactor turn, straight to the socket.

Twisted's TCP transport buffers every write until the reactor's next poll
says the socket is writable: each burst of output costs two ``epoll_ctl``
calls and a trip through the reactor's event dispatch besides the
``send()``. Its TLS transport adds a delayed call per connection per turn to
gather small writes. When one stanza fans out to a thousand connections
(a room message, a presence broadcast) those per-connection costs are most
of the server's time.

:class:`BatchedServer` is ``twisted.internet.tcp.Server`` with one change in
how output leaves it:

* what the protocol writes during a reactor turn is gathered per connection
  and handed on once, at the end of the turn, by one delayed call shared by
  every connection of the reactor (:class:`WriteBatch`);
* over TLS, that is one ``SSL_write`` per connection and turn (the TLS
  layer's own per-connection gathering is bypassed);
* the resulting bytes go to the socket at once when nothing is queued
  before them; only what the kernel does not take is left to Twisted's
  buffer and the reactor's writability events, exactly as before.

Everything else (reading, closing, producers, half-close) is Twisted's. A
connection with a registered producer always writes through Twisted's
buffer, so producers are paused and resumed as Twisted defines.
:func:`batched` makes a listening port hand out such connections.

:func:`lean_event_dispatch` takes another per-event cost out of the server
process's epoll reactor: the legacy log context Twisted sets around every
ready connection.
"""

from __future__ import annotations

import errno
import types
import weakref
from typing import Any

from twisted.internet import _newtls, epollreactor, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import TLSMemoryBIOProtocol

from xmppd.logs import logger

log = logger(__name__)

#: Bytes a connection gathers before it writes them out at once (as Twisted's
#: TLS transport does at 64,000).
FLUSH_AT = 64_000


def send_now(connection: Any, data: bytes) -> None:
    """Write ``data`` to the connection's socket at once if nothing is queued before it.

    What the socket does not take (or all of it, when the connection has
    queued output, is closing or aborted, or has a producer) goes to
    Twisted's buffer.
    """
    if (
        connection.producer is None
        and not connection.disconnecting
        and not connection._tempDataBuffer
        and connection.offset == len(connection.dataBuffer)
        and connection.connected
        and not connection._writeDisconnected
        and not connection._aborting
    ):
        sent = connection.writeSomeData(data)
        if sent.__class__ is int and sent > 0:
            if sent == len(data):
                return
            data = data[sent:]
        # 0 (the socket is full) or an error: Twisted's buffer and doWrite
        # take over, and doWrite reports a lost connection as it always does.
    FileDescriptor.write(connection, data)


class _Direct(FileDescriptor):
    """What the TLS layer writes its records with: :func:`send_now`."""

    def write(self, data: bytes) -> None:
        """Send TLS records at once when the socket takes them."""
        send_now(self, data)

    def writeSequence(self, iovec: Any) -> None:
        """Send TLS records at once when the socket takes them."""
        send_now(self, b"".join(iovec))


class WriteBatch:
    """The connections of one reactor with output gathered this turn."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._dirty: list[BatchedServer] = []
        self._call: Any = None

    def add(self, connection: BatchedServer) -> None:
        """Flush this connection at the end of the turn."""
        self._dirty.append(connection)
        if self._call is None:
            self._call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Hand every gathered output on (a failing connection is aborted, not the rest)."""
        self._call = None
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            try:
                connection.flush_output()
            except Exception:
                log.failure("writing to {peer} failed", peer=connection.getPeer())
                connection.abortConnection()


_batches: weakref.WeakKeyDictionary[Any, WriteBatch] = weakref.WeakKeyDictionary()


def batch_of(reactor: Any) -> WriteBatch:
    """The reactor's :class:`WriteBatch`."""
    found = _batches.get(reactor)
    if found is None:
        found = _batches[reactor] = WriteBatch(reactor)
    return found


class BatchedServer(tcp.Server):
    """An accepted TCP connection whose output leaves once per reactor turn (module doc)."""

    # Slots, not the instance dict: a connection's dict is large already, and
    # two more keys could make it grow a size (memory per idle connection).
    __slots__ = ("_gathered", "_gathered_size")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._gathered: list[bytes] | None = None
        self._gathered_size = 0
        super().__init__(*args, **kwargs)
        # Writes are gathered per reactor turn here, so Nagle's algorithm
        # has nothing left to gather: it would only hold a turn's output
        # until the peer acknowledged the previous one (up to its delayed
        # ACK, 40 ms on Linux).
        try:
            self.setTcpNoDelay(True)
        except OSError:
            pass

    def write(self, data: bytes) -> None:
        """Gather ``data``; it leaves at the end of this reactor turn."""
        if not isinstance(data, bytes):
            raise TypeError("Data must be bytes")
        if not data or not self.connected:
            return
        gathered = self._gathered
        if gathered is None:
            self._gathered = [data]
            self._gathered_size = len(data)
            batch_of(self.reactor).add(self)
            return
        gathered.append(data)
        self._gathered_size += len(data)
        if self._gathered_size > FLUSH_AT:
            self.flush_output()

    def writeSequence(self, iovec: Any) -> None:
        """Gather the joined data."""
        self.write(b"".join(iovec))

    def flush_output(self) -> None:
        """Hand on what was gathered: through TLS if it is on, then to the socket."""
        gathered = self._gathered
        if gathered is None:
            return
        self._gathered = None
        self._gathered_size = 0
        if not self.connected or self._aborting:
            return  # aborting drops buffered data, gathered data included
        data = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        if not self.TLS:
            send_now(self, data)
            return
        layer = self.protocol
        if isinstance(layer, TLSMemoryBIOProtocol):
            # The TLS layer's own write, not its per-connection gathering
            # (a BufferingTLSTransport's ``write`` attribute): this is the
            # gathering.
            TLSMemoryBIOProtocol.write(layer, data)
        else:
            layer.write(data)

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        """Start TLS after what was written before it has left in the clear.

        The TLS layer writes its records with :func:`send_now`.
        """
        self.flush_output()
        _newtls.startTLS(self, ctx, normal, _Direct)

    def loseConnection(self, *args: Any, **kwargs: Any) -> None:
        """Close after the gathered output (and Twisted's buffer) is written."""
        self.flush_output()
        super().loseConnection(*args, **kwargs)

    def loseWriteConnection(self) -> None:
        """Half-close after the gathered output is written."""
        self.flush_output()
        super().loseWriteConnection()

    def connectionLost(self, reason: Any) -> None:
        """Forget gathered output that can no longer be written."""
        self._gathered = None
        super().connectionLost(reason)


def batched(port: Any) -> Any:
    """Make a listening TCP port hand out :class:`BatchedServer` connections.

    Other ports (TLS-from-the-start ``ssl:`` ports, UNIX sockets, fakes in
    tests) are returned unchanged.
    """
    if isinstance(port, tcp.Port) and port.transport is tcp.Server:
        port.transport = BatchedServer
    return port


def _lean_poll(self: Any, timeout: float | None) -> None:
    """``EPollReactor.doPoll`` without the legacy log context around each event."""
    if timeout is None:
        timeout = -1
    selectables = self._selectables
    try:
        events = self._poller.poll(timeout, len(selectables))
    except OSError as e:
        if e.errno == errno.EINTR:
            return
        raise
    handle = self._doReadOrWrite
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is not None:
            try:
                handle(selectable, fd, event)
            except Exception:
                # What escapes _doReadOrWrite (a failing connectionLost):
                # logged, and the other ready connections are still handled.
                log.failure("handling a ready connection failed")


def lean_event_dispatch(reactor: Any) -> bool:
    """Dispatch the epoll reactor's events without the per-event log context.

    Twisted's epoll reactor calls every ready connection through
    ``twisted.python.log.callWithLogger``, which sets the legacy log
    system's context (the connection's ``logPrefix``) around the call: a
    copied dictionary and five Python calls per event. Only legacy
    ``log.msg`` lines read that context, and xmppd's log lines do not show
    it, while a login is about a dozen such events and a chat message two
    (8% more logins a second in ``benchmarks/README.md``). The events are
    handled as before otherwise: ``_doReadOrWrite`` already catches what a
    connection raises, logs it and drops that connection.

    Applies to exactly Twisted's ``EPollReactor`` (not a subclass, another
    reactor or a test's fake): returns whether it did.
    """
    if type(reactor) is not epollreactor.EPollReactor:
        return False
    reactor.doIteration = types.MethodType(_lean_poll, reactor)
    return True
