"""The server's figures for Prometheus: ``/metrics`` in the OpenMetrics text format.

Off by default (``[metrics] enabled``); served on the HTTP listener at
``[metrics] path`` to the addresses in ``[metrics] allowed`` (the forwarded
address behind a trusted proxy; anyone else gets 403). What it reports:

* ``xmppd_connections{transport}``: open client connections (``c2s``,
  ``c2s_direct_tls``, ``websocket``, ``bosh``: its sessions) and component
  connections (``component``);
* ``xmppd_sessions``: bound client sessions (``xmppd_sessions_detached``:
  of them, those waiting to be resumed, XEP-0198);
* ``xmppd_stanzas_total{direction, kind}``: stanzas clients sent (``in``)
  and were sent (``out``), by kind (``message``, ``presence``, ``iq``);
* ``xmppd_muc_rooms``, ``xmppd_muc_occupants``;
* ``xmppd_auth_failures_total``: failed client authentications;
* ``xmppd_uploads``, ``xmppd_upload_bytes``: stored HTTP uploads;
* ``xmppd_archived_messages_total``: personal-archive rows written since
  start-up; ``xmppd_database_bytes``: the SQLite file (and its WAL);
* ``xmppd_event_loop_lag_seconds``: the longest delay of the reactor in
  running a timer over the last ten seconds (a busy or blocked loop);
* ``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
  ``process_start_time_seconds``.

The stanza counters are two module-level :class:`collections.Counter`\\ s
of :mod:`xmppd.sm.session` that each Session bumps (one dict update a stanza).
"""

from __future__ import annotations

import ipaddress
import os
import resource as rusage
import time
from collections import deque
from typing import Any

from twisted.internet import defer, task
from twisted.web import resource, server

from xmppd.logs import logger
from xmppd.sm.session import STANZAS_IN, STANZAS_OUT

log = logger(__name__)

CONTENT_TYPE = b"application/openmetrics-text; version=1.0.0; charset=utf-8"
#: Seconds between two event-loop lag probes, and probes remembered.
LAG_INTERVAL = 1.0
LAG_WINDOW = 10
KINDS = ("message", "presence", "iq")


class LoopLag:
    """Measures how late the reactor runs a timer due every ``LAG_INTERVAL`` seconds."""

    def __init__(self, clock: Any):
        self.clock = clock
        self.samples: deque[float] = deque(maxlen=LAG_WINDOW)
        self._due: float | None = None
        self._call: task.LoopingCall | None = None

    def start(self) -> None:
        """Start probing."""
        self._call = task.LoopingCall(self._tick)
        self._call.clock = self.clock
        self._due = self.clock.seconds()
        self._call.start(LAG_INTERVAL, now=True)

    def stop(self) -> None:
        """Stop probing."""
        if self._call is not None and self._call.running:
            self._call.stop()

    def _tick(self) -> None:
        now = self.clock.seconds()
        if self._due is not None:
            self.samples.append(max(0.0, now - self._due))
        self._due = now + LAG_INTERVAL

    @property
    def lag(self) -> float:
        """The longest lag in the window (seconds)."""
        return max(self.samples, default=0.0)


class Figures:
    """Collects the figures from the running server and writes the text."""

    def __init__(self, server: Any, lag: LoopLag):
        self.server = server
        self.lag = lag
        self.started = time.time()

    @defer.inlineCallbacks
    def collect(self):
        """The OpenMetrics document (fires with text: some figures come from the database)."""
        server = self.server
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str,
                   samples: list[tuple[str, float]]) -> None:
            out.append(f"# TYPE {name} {kind}")
            out.append(f"# HELP {name} {help_text}")
            suffix = "_total" if kind == "counter" else ""
            for labels, value in samples:
                out.append(f"{name}{suffix}{labels} {_number(value)}")

        connections = []
        for listener, transport in (("c2s", "c2s"), ("c2s_direct_tls", "c2s_direct_tls"),
                                    ("components", "component")):
            factory = server.factories.get(listener)
            streams = getattr(factory, "streams", None)
            if streams is not None:
                connections.append((f'{{transport="{transport}"}}', len(streams)))
        for transport, factory in (("websocket", server.websocket_c2s),
                                   ("bosh", server.bosh_c2s)):
            if factory is not None:  # BOSH: one stream per session
                connections.append((f'{{transport="{transport}"}}', len(factory.streams)))
        metric("xmppd_connections", "gauge", "Open connections by transport.", connections)
        sessions = server.session_manager
        bound = sessions.all_sessions() if sessions is not None else []
        metric("xmppd_sessions", "gauge", "Bound client sessions.", [("", len(bound))])
        detached = sum(1 for s in bound if s.connection is None)
        metric("xmppd_sessions_detached", "gauge",
               "Sessions waiting to be resumed (XEP-0198).", [("", detached)])
        metric("xmppd_stanzas", "counter", "Stanzas clients sent (in) and were sent (out).",
               [(f'{{direction="{direction}",kind="{kind}"}}', counts[kind])
                for direction, counts in (("in", STANZAS_IN), ("out", STANZAS_OUT))
                for kind in KINDS])
        muc = server.muc
        rooms = list(getattr(muc, "rooms", {}).values()) if muc is not None else []
        metric("xmppd_muc_rooms", "gauge", "Rooms in memory.", [("", len(rooms))])
        metric("xmppd_muc_occupants", "gauge", "Occupants of all rooms.",
               [("", sum(len(getattr(r, "occupants", ())) for r in rooms))])
        guard = getattr(server.factories.get("c2s"), "guard", None)
        metric("xmppd_auth_failures", "counter", "Failed client authentications.",
               [("", getattr(guard, "failed_logins", 0))])
        if server.database is not None:
            count, size = yield _upload_totals(server)
            if count is not None:
                metric("xmppd_uploads", "gauge", "Stored HTTP uploads.", [("", count)])
                metric("xmppd_upload_bytes", "gauge", "Bytes of stored HTTP uploads.",
                       [("", size)])
            archive = sessions.modules.get("mam") if sessions is not None else None
            if archive is not None:
                metric("xmppd_archived_messages", "counter",
                       "Personal archive rows written since start-up.",
                       [("", archive.writer.rows_written)])
            path = server.database.path
            size = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
            metric("xmppd_database_bytes", "gauge", "Bytes of the database file and its WAL.",
                   [("", size)])
        metric("xmppd_event_loop_lag_seconds", "gauge",
               "The longest delay in running a due timer over the last 10 s.",
               [("", self.lag.lag)])
        usage = rusage.getrusage(rusage.RUSAGE_SELF)
        metric("process_cpu_seconds", "counter", "CPU time, user and system.",
               [("", usage.ru_utime + usage.ru_stime)])
        metric("process_resident_memory_bytes", "gauge", "Resident memory.",
               [("", _resident_bytes())])
        metric("process_start_time_seconds", "gauge", "Start time (POSIX seconds).",
               [("", self.started)])
        out.append("# EOF")
        return "\n".join(out) + "\n"


class MetricsResource(resource.Resource):
    """``GET /metrics`` for the allowed addresses."""

    isLeaf = True

    def __init__(self, figures: Figures, allowed: tuple[str, ...]):
        super().__init__()
        self.figures = figures
        self.networks = [ipaddress.ip_network(a, strict=False) for a in allowed]

    def _allowed(self, request: server.Request) -> bool:
        address = request.client_ip() if hasattr(request, "client_ip") else \
            request.getClientAddress().host
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if getattr(ip, "ipv4_mapped", None) is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def render_GET(self, request: server.Request):  # noqa: N802 - Twisted's API
        """The document, or 403."""
        if not self._allowed(request):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"forbidden\n"
        d = self.figures.collect()

        def done(text: str) -> None:
            request.setHeader(b"content-type", CONTENT_TYPE)
            request.setHeader(b"cache-control", b"no-store")
            request.write(text.encode())
            request.finish()

        def failed(reason) -> None:
            log.failure("collecting the metrics failed", reason)
            request.setResponseCode(500)
            request.finish()

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


@defer.inlineCallbacks
def _upload_totals(server: Any):
    if getattr(server, "upload", None) is None:
        return None, None
    rows = yield server.database.query(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM uploads WHERE uploaded IS NOT NULL")
    return rows[0]


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return rusage.getrusage(rusage.RUSAGE_SELF).ru_maxrss * 1024


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def mount_metrics(server: Any) -> LoopLag:
    """Mount ``/metrics`` on the server's HTTP service; the lag probe (started)."""
    settings = server.config.metrics
    lag = LoopLag(server.reactor)
    server.http.mount(settings.path, MetricsResource(Figures(server, lag), settings.allowed))
    lag.start()
    return lag
