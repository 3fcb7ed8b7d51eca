"""Listening on a configured endpoint description, IPv4 and IPv6 for plain ``tcp:PORT``.

Listener addresses are Twisted server endpoint descriptions (``tcp:5222``,
``tcp:5222:interface=127.0.0.1``, ``ssl:...``, ``unix:...``,
``systemd:domain=INET6:index=0``). Twisted's ``tcp:PORT`` binds 0.0.0.0
only, so a client coming over IPv6 (``::1`` included) is refused. Like
Prosody and ejabberd, :func:`listen` binds such a description twice:

* IPv4 on ``0.0.0.0``, then
* IPv6 on ``::`` with ``IPV6_V6ONLY`` set, on the port number the IPv4
  socket got (so ``tcp:0`` gives one port number for both), and so that the
  two sockets never collide, whatever ``net.ipv6.bindv6only`` says.

If the machine has no IPv6 (the socket cannot be created or ``::`` cannot
be bound: ``EAFNOSUPPORT``, ``EADDRNOTAVAIL``), one warning is logged and
the IPv4 listener alone serves. Any other description (an ``interface``
option, ``tcp6``, ``ssl``, ``unix``, ``systemd``, plugins) goes to
``endpoints.serverFromString`` unchanged and gives one port; write
``tcp:5222:interface=0.0.0.0`` to listen on IPv4 only.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer, endpoints, tcp
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.posixbase import PosixReactorBase

from xmppd import logs
from xmppd.transport import BatchedServer, batched

log = logs.logger(__name__)

#: Errors of the IPv6 socket that mean "this host has no IPv6" (not "port in use").
IPV6_UNAVAILABLE = frozenset({errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL})

#: How often ``tcp:0`` picks a new port when the IPv6 half of the pair is taken.
_PORT_ZERO_ATTEMPTS = 5


class IPv6OnlyPort(tcp.Port):
    """A TCP listening port whose IPv6 socket has ``IPV6_V6ONLY`` set.

    Its connections are :class:`xmppd.transport.BatchedServer`, like those
    of every port :func:`listen` opens.

    Construct it like ``tcp.Port`` with an IPv6 ``interface`` (``"::"``) and
    call ``startListening()``, as ``reactor.listenTCP`` does.
    """

    def createInternetSocket(self) -> socket.socket:
        """The listening socket, IPv6 only (IPv4-mapped addresses are not accepted)."""
        sock = super().createInternetSocket()
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        except OSError:
            sock.close()
            raise
        return sock

    transport = BatchedServer


def listen(
    reactor: Any, description: str, factory: IProtocolFactory
) -> Deferred[list[IListeningPort]]:
    """Listen on an endpoint description; a Deferred firing with the list of ports.

    TCP ports hand out :class:`xmppd.transport.BatchedServer` connections
    (output written once per reactor turn, straight to the socket).

    ``tcp:PORT`` without an ``interface`` option gives ``[IPv4 port, IPv6
    port]`` (or only the IPv4 port if the host has no IPv6); anything else
    gives the one port of ``endpoints.serverFromString(reactor,
    description).listen(factory)``.

    Like that expression, a description that does not parse raises at once
    (``ValueError``, ...; ``IndexError``/``KeyError`` for a ``systemd:``
    socket that systemd did not pass), and a binding failure errbacks with
    ``CannotListenError``; an IPv4 port already bound for the pair is then
    stopped (its socket closes on the next reactor turn).
    With a real reactor the Deferred has fired by the time it is returned
    for ``tcp``, ``ssl``, ``unix`` and ``systemd`` descriptions.
    """
    queued = with_backlog(description)
    endpoint = endpoints.serverFromString(reactor, queued)
    dual = _dual_stack(queued) if type(endpoint) is endpoints.TCP4ServerEndpoint else None
    if dual is None:
        d: Deferred = endpoint.listen(factory)
        return d.addCallback(lambda port: [batched(port)])
    number, backlog = dual
    return defer.execute(_listen_dual_stack, reactor, description, number, backlog, factory)


def stop_listening(ports: Iterable[IListeningPort]) -> Deferred[list[Any]]:
    """Stop every port; a Deferred firing once all of them are closed."""
    return defer.gatherResults(
        [defer.maybeDeferred(port.stopListening) for port in ports], consumeErrors=True
    )


def describe_ports(ports: Iterable[IListeningPort]) -> str:
    """Where the ports listen, for log lines, e.g. ``0.0.0.0:5222, [::]:5222``."""
    return ", ".join(describe_address(port.getHost()) for port in ports)


def describe_address(address: Any) -> str:
    """One listening address: ``0.0.0.0:5222``, ``[::]:5222`` or a UNIX socket's path."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return str(address)


def _listen_dual_stack(
    reactor: Any, description: str, port: int, backlog: int, factory: IProtocolFactory
) -> list[IListeningPort]:
    attempts = _PORT_ZERO_ATTEMPTS if port == 0 else 1
    while True:
        attempts -= 1
        ipv4 = batched(reactor.listenTCP(port, factory, backlog=backlog, interface=""))
        number = ipv4.getHost().port
        try:
            ipv6 = _listen_ipv6(reactor, number, backlog, factory)
        except CannotListenError as e:
            code = getattr(e.socketError, "errno", None)
            if code in IPV6_UNAVAILABLE:
                log.warn(
                    "IPv6 is not available ({reason}): {description} listens on "
                    "0.0.0.0:{port} (IPv4) only",
                    reason=_reason(e.socketError),
                    description=description,
                    port=number,
                )
                return [ipv4]
            ipv4.stopListening()
            if code == errno.EADDRINUSE and attempts > 0:
                continue  # tcp:0: the port the kernel gave IPv4 is taken on IPv6
            raise
        except BaseException:
            ipv4.stopListening()
            raise
        return [ipv4, ipv6]


def _listen_ipv6(reactor: Any, port: int, backlog: int, factory: IProtocolFactory) -> Any:
    if isinstance(reactor, PosixReactorBase):
        listening = IPv6OnlyPort(port, factory, backlog, "::", reactor)
        listening.startListening()
        return listening
    # Not the posix TCP implementation (fakes in tests; IOCP, where IPv6
    # sockets are IPv6-only by default): the reactor's own IPv6 listener.
    return batched(reactor.listenTCP(port, factory, backlog=backlog, interface="::"))


def _reason(error: Any) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


#: The accept queue of a TCP listener that names none (Twisted's default is 50):
#: after a restart thousands of clients reconnect at once, and connections
#: beyond the queue are dropped by the kernel and retried by clients seconds
#: later. The kernel caps it at ``net.core.somaxconn`` (4096 on current Linux).
DEFAULT_BACKLOG = 1024


def with_backlog(description: str) -> str:
    """``description`` with ``backlog=DEFAULT_BACKLOG`` added to a ``tcp``/``tcp6``/``ssl``
    listener that sets none; anything else unchanged."""
    try:
        args, options = _split(description)
    except (ValueError, IndexError):
        return description  # serverFromString says what is wrong with it
    positional_backlog = {"tcp": 4, "tcp6": 4, "ssl": 7}.get(args[0])
    if positional_backlog is None or "backlog" in options or len(args) >= positional_backlog:
        return description
    return description + f":backlog={DEFAULT_BACKLOG}"


def _dual_stack(description: str) -> tuple[int, int] | None:
    """``(port, backlog)`` if ``description`` is ``tcp:PORT`` without an interface, else None.

    Call it only for descriptions ``serverFromString`` turned into a
    ``TCP4ServerEndpoint`` (the prefix is ``tcp``, the arguments are valid).
    """
    args, options = _split(description)
    if args[0] != "tcp" or "interface" in options or len(args) > 2:
        return None  # tcp:PORT:INTERFACE[:BACKLOG] names the interface positionally
    port = args[1] if len(args) == 2 else options["port"]
    return int(port), int(options.get("backlog", 50))


def _split(description: str) -> tuple[list[str], dict[str, str]]:
    """Positional and ``key=value`` fields, as Twisted splits them.

    Fields are separated by ``:``, the first ``=`` of a field separates a key
    from its value, and a backslash takes the next character literally.
    """
    args: list[str] = []
    options: dict[str, str] = {}
    field = [""]
    chars = iter(description)

    def end_field() -> None:
        if len(field) == 1:
            args.append(field[0])
        else:
            options[field[0]] = field[1]

    for char in chars:
        if char == "\\":
            field[-1] += next(chars, "")
        elif char == ":":
            end_field()
            field = [""]
        elif char == "=" and len(field) == 1:
            field.append("")
        else:
            field[-1] += char
    end_field()
    return args, options
