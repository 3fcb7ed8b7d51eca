"""The systemd notification protocol (sd_notify), written with the socket module.

systemd passes ``$NOTIFY_SOCKET`` to a ``Type=notify`` service: a path to an
``AF_UNIX`` datagram socket, or an abstract socket name written with a
leading ``@``. The service sends newline-separated ``KEY=value`` assignments
to it: ``READY=1`` once it serves, ``RELOADING=1`` (with
``MONOTONIC_USEC``) while it re-reads its configuration, ``STOPPING=1`` when
it begins to shut down, ``STATUS=...`` free text for ``systemctl status``.

Without ``$NOTIFY_SOCKET`` (not run by systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from xmppd.logs import logger

log = logger(__name__)


def notify_address(environ: Mapping[str, str] | None = None) -> str | bytes | None:
    """The address to send notifications to, or None when there is none.

    A leading ``@`` names an abstract socket (returned as bytes starting with
    a NUL byte, which is how Python's socket module spells it).
    """
    environ = os.environ if environ is None else environ
    value = environ.get("NOTIFY_SOCKET", "")
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if not value.startswith("/"):
        return None  # not a unix socket (e.g. vsock:...): unsupported here
    return value


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notification (e.g. ``"READY=1"``); True if it was sent.

    Failing to notify never stops the server: the problem is logged.
    """
    address = notify_address(environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as e:
        log.warn("cannot notify systemd ({state}): {error}", state=state.split("\n")[0],
                 error=e.strerror or e)
        return False
    return True


def ready(status: str = "", environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the service is up (``READY=1``), with an optional status line."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""), environ)


def reloading(environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd a configuration reload has started (send :func:`ready` after)."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", environ)


def stopping(environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the service is shutting down."""
    return notify("STOPPING=1\nSTATUS=shutting down", environ)
