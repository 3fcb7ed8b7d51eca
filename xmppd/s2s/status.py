"""What an S2S stream looks like from outside: ``xmppdctl s2s`` and the control channel.

:func:`connection_status` turns an :class:`~xmppd.s2s.stream.S2SStream`
into an :class:`S2SConnection`, plain data that
:meth:`~xmppd.s2s.manager.S2SManager.connections` lists and
:mod:`xmppd.control` sends to ``xmppdctl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How an authentication method is shown.
AUTH_NAMES = {"EXTERNAL": "SASL EXTERNAL", "dialback": "dialback"}


@dataclass(frozen=True)
class S2SConnection:
    """One S2S stream: who, how secured, how authenticated, since when, how busy.

    ``remote`` holds the remote domains: the one an outgoing stream is for,
    or those an incoming stream authenticated (the domain its header named
    while none has yet; empty when unknown). ``tls_version`` is the
    negotiated protocol (``TLSv1.3``), ``""`` without TLS or before the
    handshake ends. ``auth`` is ``SASL EXTERNAL``, ``dialback`` or ``none``.
    """

    direction: str
    local: str
    remote: tuple[str, ...]
    tls: bool
    tls_version: str
    auth: str
    #: Seconds since the connection was made.
    connected: float
    stanzas_in: int
    stanzas_out: int

    def sort_key(self) -> tuple:
        """Outgoing first, then by domains."""
        return (self.direction != "out", self.local, self.remote)


def tls_version(transport: Any) -> str:
    """The TLS protocol version a transport negotiated (``""``: none or not yet)."""
    try:
        name = transport.getHandle().get_protocol_version_name()
    except Exception:
        return ""
    return name if isinstance(name, str) and name.startswith("TLS") else ""


def connection_status(stream: Any, now: float) -> S2SConnection:
    """The state of one S2S stream at ``now`` (reactor seconds)."""
    if stream.initiating:
        remote: tuple[str, ...] = (stream.remote,) if stream.remote else ()
        auth = stream.auth_method if stream.ready else None
    else:
        remote = tuple(sorted(stream.authenticated)) or (
            (stream.remote,) if stream.remote else ())
        auth = stream.auth_method or ("dialback" if stream.authenticated else None)
    connected_at = stream.connected_at
    return S2SConnection(
        direction="out" if stream.initiating else "in",
        local=stream.local or "",
        remote=remote,
        tls=bool(stream.tls),
        tls_version=tls_version(stream.transport) if stream.tls else "",
        auth=AUTH_NAMES.get(auth, "none") if auth else "none",
        connected=max(0.0, now - connected_at) if connected_at is not None else 0.0,
        stanzas_in=stream.stanzas_in,
        stanzas_out=stream.stanzas_out,
    )
