"""The control channel: ``xmppdctl`` asking the running server about its connections.

The server listens on a UNIX socket (``server.control_socket``, by default
``control.sock`` in ``data_dir``; never TCP) and speaks AMP
(:mod:`twisted.protocols.amp`) on it. The socket is created with mode 0600
(under a umask that never lets it be wider, even for an instant), so only
the server's user, who runs ``xmppdctl`` (README, Operations), can connect;
a socket left behind by a crash (nothing answers on it) is replaced at
start-up, and Twisted removes it when the server stops listening. When it
cannot be used (another live server answers on it, the path is too long for
a UNIX socket, the folder is missing) the server logs why and runs without
it.

Every command is read-only:

* :class:`S2SConnections` — the S2S streams
  (:meth:`~xmppd.s2s.manager.S2SManager.connections`), a page at a time
  (an AMP value holds at most 64 KiB).

Server side: :func:`listen_control` and :class:`ControlLocator`. Client
side: :func:`s2s_connections` (fires with the rows, or raises
:class:`ControlError` with a one-line reason) and :func:`s2s_lines`
(``xmppdctl s2s``'s table).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints, error, protocol
from twisted.protocols import amp

from xmppd.logs import logger
from xmppd.s2s.status import S2SConnection

log = logger(__name__)

#: Bytes of AMP values a page of rows may fill (AMP's limit per value is 65535).
PAGE_BUDGET = 60000
#: Bytes of remote domain names one row carries at most (the rest are counted).
DOMAINS_BUDGET = 16000
#: The longest path a UNIX socket can be bound to (``sun_path`` is 108 bytes).
MAX_SOCKET_PATH = 107
#: Seconds ``xmppdctl`` waits for the server to connect and answer.
CLIENT_TIMEOUT = 10.0


class ControlError(Exception):
    """The control channel cannot be used; str() is a one-line reason for the operator."""


# -- the protocol ------------------------------------------------------------------


S2S_ROW = [
    (b"direction", amp.Unicode()),
    (b"local", amp.Unicode()),
    (b"remote", amp.ListOf(amp.Unicode())),
    (b"remote_omitted", amp.Integer()),
    (b"tls", amp.Boolean()),
    (b"tls_version", amp.Unicode()),
    (b"auth", amp.Unicode()),
    (b"connected", amp.Float()),
    (b"stanzas_in", amp.Integer()),
    (b"stanzas_out", amp.Integer()),
]


class S2SConnections(amp.Command):
    """The S2S connections from ``offset`` on, as many as fit in one answer.

    Answer: ``enabled`` (False when federation is off), ``total`` (how many
    connections there are now) and ``connections``, rows of
    :class:`~xmppd.s2s.status.S2SConnection`'s fields (``remote_omitted``:
    remote domains left out of a row too long to send).
    """

    arguments = [(b"offset", amp.Integer())]
    response = [(b"enabled", amp.Boolean()), (b"total", amp.Integer()),
                (b"connections", amp.AmpList(S2S_ROW))]
    requiresAnswer = True


def _s2s_row(connection: S2SConnection) -> dict[str, Any]:
    row = dataclasses.asdict(connection)
    kept, size = [], 0
    for domain in connection.remote:
        size += len(domain.encode()) + 2
        if size > DOMAINS_BUDGET:
            break
        kept.append(domain)
    row["remote"] = kept
    row["remote_omitted"] = len(connection.remote) - len(kept)
    return row


def _row_size(row: dict[str, Any]) -> int:
    """An upper bound of the bytes a row takes in an AmpList."""
    size = 0
    for key, value in row.items():
        size += 4 + len(key)
        if isinstance(value, list):
            size += sum(2 + len(v.encode()) for v in value)
        else:
            size += len(str(value).encode())
    return size + 2


def page(rows: Sequence[dict[str, Any]], offset: int,
         budget: int | None = None) -> list[dict[str, Any]]:
    """The rows from ``offset`` on that fit in ``budget`` bytes (at least one)."""
    budget = PAGE_BUDGET if budget is None else budget
    chosen: list[dict[str, Any]] = []
    used = 0
    for row in rows[max(0, offset):]:
        size = _row_size(row)
        if chosen and used + size > budget:
            break
        chosen.append(row)
        used += size
    return chosen


# -- server side -------------------------------------------------------------------


class ControlLocator(amp.CommandLocator):
    """The server's answers to the control commands (read-only)."""

    def __init__(self, server: Any):
        self.server = server

    @S2SConnections.responder
    def s2s_connections(self, offset: int) -> dict[str, Any]:
        """A page of the S2S manager's connections."""
        manager = getattr(self.server, "s2s", None)
        if manager is None:
            return {"enabled": False, "total": 0, "connections": []}
        rows = [_s2s_row(c) for c in manager.connections()]
        return {"enabled": True, "total": len(rows), "connections": page(rows, offset)}


class ControlFactory(protocol.ServerFactory):
    """Builds one AMP protocol per ``xmppdctl`` connection."""

    def __init__(self, server: Any):
        self.server = server

    def buildProtocol(self, addr: Any) -> amp.AMP:
        """An AMP protocol answering with :class:`ControlLocator`."""
        proto = amp.AMP(locator=ControlLocator(self.server))
        proto.factory = self
        return proto


def _remove_stale(path: Path) -> None:
    """Remove a socket nothing listens on; refuse a live one or a file that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        log.info("removed a stale control socket {path} (left by a crash?)", path=path)
        return
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from None
    finally:
        probe.close()
    raise ControlError(f"{path} is in use: another xmppd is running with this data_dir")


def listen_control(reactor: Any, path: Path, server: Any) -> Any:
    """Listen for ``xmppdctl`` on the UNIX socket ``path`` (mode 0600); the port.

    Raises :class:`ControlError` when it cannot (path too long, in use, not
    a socket, folder missing or not writable).
    """
    problem = _too_long(path)
    if problem is not None:
        raise problem
    _remove_stale(path)
    previous = os.umask(0o177)  # the socket is never wider than 0600, not even at bind
    try:
        port = reactor.listenUNIX(str(path), ControlFactory(server), mode=0o600, wantPID=False)
    except error.CannotListenError as e:
        reason = e.socketError
        why = getattr(reason, "strerror", None) or str(reason)
        raise ControlError(f"cannot listen on {path}: {why}") from None
    finally:
        os.umask(previous)
    return port


# -- client side -------------------------------------------------------------------


def _not_running(path: Path) -> ControlError:
    return ControlError(f"xmppd is not running (no control socket at {path})")


def _denied(path: Path) -> ControlError:
    return ControlError(f"permission denied on {path}: run xmppdctl as the server's user")


def _too_long(path: Path) -> ControlError | None:
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return None
    return ControlError(f"{path}: longer than {MAX_SOCKET_PATH} bytes (the limit of a UNIX "
                        "socket path): set server.control_socket to a shorter one")


def _check_socket(path: Path) -> None:
    problem = _too_long(path)
    if problem is not None:
        raise problem
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise _not_running(path) from None
    except PermissionError:
        raise _denied(path) from None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} is not a socket (is server.control_socket right?)")


@defer.inlineCallbacks
def _connect(reactor: Any, path: Path, timeout: float):
    _check_socket(path)
    endpoint = endpoints.UNIXClientEndpoint(reactor, str(path), timeout=timeout)
    try:
        proto = yield endpoints.connectProtocol(endpoint, amp.AMP())
    except error.ConnectionRefusedError:
        raise ControlError(f"xmppd is not running (nothing answers on {path})") from None
    except error.ConnectError as e:
        if e.osError in (errno.EACCES, errno.EPERM):
            raise _denied(path) from None
        if e.osError == errno.ENOENT:
            raise _not_running(path) from None
        reason = os.strerror(e.osError) if isinstance(e.osError, int) else str(e)
        raise ControlError(f"cannot connect to {path}: {reason}") from None
    return proto


@defer.inlineCallbacks
def call(reactor: Any, path: Path, command: type[amp.Command],
         timeout: float = CLIENT_TIMEOUT, **arguments: Any):
    """Run one command on the server listening at ``path``; fires with its answer.

    Failures are :class:`ControlError` with a one-line reason.
    """
    proto = yield _connect(reactor, path, timeout)
    try:
        d = proto.callRemote(command, **arguments)
        d.addTimeout(timeout, reactor)
        try:
            answer = yield d
        except defer.TimeoutError:
            raise ControlError(f"xmppd did not answer on {path} within {timeout:g} s") from None
        except amp.UnhandledCommand:
            raise ControlError("the running xmppd does not know this command (an older "
                               "version? restart it)") from None
        except (amp.RemoteAmpError, amp.UnknownRemoteError) as e:
            raise ControlError(f"xmppd could not answer: {e}") from None
        except error.ConnectionDone:
            raise ControlError(f"xmppd closed the control connection on {path}") from None
        return answer
    finally:
        proto.transport.loseConnection()


@defer.inlineCallbacks
def s2s_connections(reactor: Any, path: Path, timeout: float = CLIENT_TIMEOUT):
    """The running server's S2S connections: fires with ``(enabled, rows)``.

    ``rows`` are dicts of :class:`~xmppd.s2s.status.S2SConnection`'s fields
    (and ``remote_omitted``), fetched a page at a time.
    """
    rows: list[dict[str, Any]] = []
    while True:
        answer = yield call(reactor, path, S2SConnections, timeout=timeout, offset=len(rows))
        if not answer["enabled"]:
            return False, []
        rows.extend(answer["connections"])
        if not answer["connections"] or len(rows) >= answer["total"]:
            return True, rows


def duration(seconds: float) -> str:
    """A short duration: ``45s``, ``2m05s``, ``3h02m``, ``2d04h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


S2S_HEADER = ("DIR", "LOCAL", "REMOTE", "TLS", "AUTH", "CONNECTED", "IN", "OUT")


def s2s_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """``xmppdctl s2s``'s table: a header, then one line per connection."""
    table = [S2S_HEADER]
    for row in rows:
        remote = ",".join(row["remote"]) or "?"
        if row.get("remote_omitted"):
            remote += f",+{row['remote_omitted']}"
        tls = "no"
        if row["tls"]:
            tls = f"yes ({row['tls_version']})" if row["tls_version"] else "yes"
        table.append((row["direction"], row["local"] or "?", remote, tls, row["auth"],
                      duration(row["connected"]), str(row["stanzas_in"]),
                      str(row["stanzas_out"])))
    widths = [max(len(line[i]) for line in table) for i in range(len(S2S_HEADER))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            .rstrip() for line in table]
