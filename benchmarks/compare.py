"""Run every workload against xmppd, Prosody and ejabberd, side by side, and print the table.

    python benchmarks/compare.py            # full run
    python benchmarks/compare.py --quick    # smoke run (a few minutes with three servers)
    python benchmarks/compare.py --repeat 2 # two interleaved rounds: ranges in the table
    python benchmarks/compare.py --scaling  # muc at 10..1000 occupants, idle at 1000/5000
    python benchmarks/compare.py --workloads pep   # PEP only
    python benchmarks/compare.py --plain    # the old mode: plain TCP, SASL PLAIN

Every connection uses STARTTLS and SCRAM-SHA-256 unless ``--plain``; all
servers store hashed passwords (SCRAM keys). Registration also fills the
generator's SCRAM cache, so that measured runs pay no PBKDF2. Rounds
(``--repeat``) are interleaved: each round runs every workload against every
server in turn, and the table shows the range over the rounds.

Each server gets its own temporary folder and accounts (created once by
in-band registration), then every workload runs against a freshly started
server pinned to core ``--server-cpu`` while the load generator
(``loadgen.py``) runs pinned to ``--loadgen-cpu``. Workloads alternate between
the servers so that both see the same machine conditions. Prosody is skipped
when it is not installed. Every server started is stopped, also on errors and
Ctrl-C. The JSON line of every run is kept (``--json FILE``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import (
    BENCH_DIR,
    PROSODY_FEATURES,
    EjabberdServer,
    ProsodyServer,
    Server,
    ServerError,
    XmppdServer,
)

LOADGEN = BENCH_DIR / "loadgen.py"


@dataclass
class Params:
    """Workload sizes for one run of the driver."""

    login_clients: int = 500
    idle_clients: int = 1000
    #: Seconds the idle connections stay silent before the memory is read:
    #: idle means silent for a while (xmppd frees a silent stream's parser
    #: after ``limits.hibernate_after``, 10 s, at the next sweep); every
    #: server gets the same wait.
    idle_settle: float = 25.0
    storm_users: int = 200
    storm_contacts: int = 50
    big_occupants: int = 1000
    join_occupants: int = 1000
    chat_pairs: int = 50
    chat_window: int = 20
    muc_rooms: int = 1
    muc_occupants: int = 50
    muc_senders: int = 5
    muc_window: int = 10
    pep_contacts: int = 100
    pep_window: int = 10
    pep_payload: int = 100
    duration: float = 10.0
    warmup: float = 2.0
    rate_share: float = 0.5
    scaling_occupants: list[int] = field(default_factory=lambda: [10, 50, 200, 1000])
    scaling_idle: list[int] = field(default_factory=lambda: [1000, 5000])

    @classmethod
    def quick(cls) -> Params:
        """Small sizes for a smoke run."""
        return cls(
            login_clients=100, idle_clients=100, chat_pairs=10, muc_occupants=20,
            storm_users=40, storm_contacts=10, big_occupants=100, join_occupants=100,
            pep_contacts=20, duration=2.0, warmup=0.5, scaling_occupants=[10, 50],
            scaling_idle=[200], idle_settle=3.0,
        )


WORKLOADS = ("login", "storm", "idle", "chat", "muc", "muc-big", "join", "pep")
#: xmppd as it runs by default, and without its message archive (like-for-like
#: with a reference server that archives nothing: ``--servers xmppd,xmppd-no-mam,ejabberd``).
XMPPD_VARIANTS = ("xmppd", "xmppd-no-mam")


@dataclass
class Job:
    """One loadgen invocation: a label for the table and its arguments."""

    label: str
    workload: str
    args: list[str]


def raise_file_limit() -> None:
    """Let the servers (which inherit it) and the generator hold thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def muc_window(occupants: int, base: int) -> int:
    """Scaling runs keep about base*50 deliveries in flight whatever the room size."""
    return max(1, round(base * 50 / occupants))


class Driver:
    """Starts servers, runs loadgen jobs against them, collects the JSON lines."""

    def __init__(self, args: argparse.Namespace, servers: list[Server]):
        self.args = args
        self.servers = servers
        self.results: list[dict[str, Any]] = []
        self.runs: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def log(self, message: str) -> None:
        """Progress on stderr (the table goes to stdout)."""
        print(f"[compare] {message}", file=sys.stderr, flush=True)

    def loadgen(self, server: Server, workload: str, extra: list[str], timeout: float) -> dict:
        """Run loadgen.py once against a running server; its JSON line (or an error)."""
        command = [
            self.args.python, str(LOADGEN), workload, *server.loadgen_args(),
            "--label", server.name, "--cpu", str(self.args.loadgen_cpu),
            "--server-pid", str(server.pid), *self.security(server), *extra,
        ]
        if getattr(self.args, "source_addresses", 0):
            command += ["--source-addresses", str(self.args.source_addresses)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"workload": workload, "server": server.name, "error": "loadgen timed out"}
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            return {"workload": workload, "server": server.name,
                    "error": f"loadgen exit {done.returncode}: {done.stderr.strip()[-500:]}"}
        return json.loads(lines[-1])

    def security(self, server: Server) -> list[str]:
        """STARTTLS + SCRAM-SHA-256 with a SCRAM cache per server, or nothing (--plain).

        Drivers of other scripts (archive_chat.py, sm_costs.py) have no
        ``plain`` option and keep their plain-TCP mode.
        """
        if getattr(self.args, "plain", True):
            return []
        return ["--tls", "--sasl", "scram-sha-256",
                "--scram-cache", str(server.workdir.parent / f"{server.name}-scram.json")]

    def register(self, server: Server, count: int) -> None:
        """Create the accounts bench0..bench{count-1} on a server (started and stopped here)."""
        server.start()
        try:
            self.log(f"{server.name}: registering {count} accounts")
            result = self.loadgen(server, "register", ["--count", str(count),
                                                       "--concurrency", "20"], 1800)
            if "error" in result:
                raise ServerError(f"{server.name}: registration failed: {result['error']}")
            self.log(f"{server.name}: {result['created']} created, {result['existing']} existed "
                     f"({result['seconds']} s)")
        finally:
            server.stop()

    def run_job(self, server: Server, job: Job) -> dict[str, Any]:
        """One run on a freshly started server."""
        runs = []
        for _ in range(1):
            server.start()
            try:
                result = self.loadgen(server, job.workload, job.args, self.args.job_timeout)
                if not server.alive():
                    result.setdefault("error", "the server died during the run")
                    result["server_log"] = server.log_tail()
            finally:
                status = server.stop()
            if status not in (0, None, -signal.SIGTERM):
                result["server_exit"] = status
            result["label"] = job.label
            runs.append(result)
            self.log(f"{server.name} {job.label}: {summary(result)}")
        self.results.extend(runs)
        return runs[0]

    def measure(self, jobs: list[Job], accounts: int, base: Path,
                keep: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
        """Register the accounts on every server, run the jobs; always stop the servers.

        The work folder ``base`` is removed afterwards unless ``keep``.
        """
        try:
            for server in self.servers:
                self.register(server, accounts)
            return self.run_jobs(jobs)
        finally:
            for server in self.servers:
                server.stop()
            if not keep:
                subprocess.run(["rm", "-rf", str(base)], check=False)

    def run_jobs(self, jobs: list[Job]) -> dict[tuple[str, str], dict[str, Any]]:
        """--repeat interleaved rounds of every job against every server; the best run of each.

        All runs are kept in ``self.runs`` (for the ranges in the table).
        """
        labels = {job.label for job in jobs}
        for round_number in range(self.args.repeat):
            if self.args.repeat > 1:
                self.log(f"round {round_number + 1} of {self.args.repeat}")
            for job in jobs:
                for server in self.servers:
                    result = self.run_job(server, job)
                    result["round"] = round_number + 1
                    self.runs.setdefault((job.label, server.name), []).append(result)
        return {key: max(runs, key=score) for key, runs in self.runs.items() if key[0] in labels}


def score(result: dict[str, Any]) -> float:
    """Bigger is better: throughput, or less memory, for best-of-N."""
    if "error" in result:
        return float("-inf")
    if result.get("workload") == "idle":
        return -(result.get("kib_per_connection") or float("inf"))
    if result.get("params", {}).get("join_only"):
        return -(result.get("join_seconds") or float("inf"))
    if "rate" in result.get("params", {}) and result["params"]["rate"]:
        return -(result.get("p99_ms") or float("inf"))
    return (result.get("delivered_per_s") or result.get("notifications_per_s")
            or result.get("presence_per_s") or result.get("logins_per_s") or 0.0)


def summary(result: dict[str, Any]) -> str:
    """One short human line for progress output."""
    if "error" in result:
        return "ERROR " + result["error"]
    keys = ("logins_per_s", "kib_per_connection", "delivered_per_s", "notifications_per_s",
            "notification_stanzas_per_s", "publishes_per_s", "presence_per_s", "settle_seconds",
            "user_settle_p99_ms", "join_seconds", "p50_ms", "p99_ms",
            "server_cpu", "other_cpu", "error_stanzas", "connections_lost")
    return ", ".join(f"{k}={result[k]}" for k in keys if result.get(k) is not None)


def standard_jobs(
    p: Params, rates: dict[str, float] | None = None, workloads: tuple[str, ...] = WORKLOADS
) -> list[Job]:
    """The comparison workloads (rate jobs only when rates are known)."""
    timed = ["--duration", str(p.duration), "--warmup", str(p.warmup)]
    chat = ["--pairs", str(p.chat_pairs), "--window", str(p.chat_window), *timed]
    muc = ["--rooms", str(p.muc_rooms), "--occupants", str(p.muc_occupants),
           "--senders", str(p.muc_senders), "--window", str(p.muc_window), *timed]
    pep = ["--contacts", str(p.pep_contacts), "--window", str(p.pep_window),
           "--payload", str(p.pep_payload), *timed]
    if rates is not None:
        return [
            Job(f"{name}@rate", name, [*args, "--rate", str(rates[name])])
            for name, args in (("chat", chat), ("muc", muc))
            if name in rates
        ]
    jobs = [
        Job("login", "login", ["--clients", str(p.login_clients), "--concurrency", "50"]),
        Job("storm", "storm", ["--users", str(p.storm_users),
                               "--contacts", str(p.storm_contacts)]),
        Job("idle", "idle", ["--clients", str(p.idle_clients),
                             "--settle", str(p.idle_settle)]),
        Job("chat", "chat", chat),
        Job("muc", "muc", muc),
        Job("muc-big", "muc", [
            "--rooms", "1", "--occupants", str(p.big_occupants),
            "--senders", str(p.muc_senders),
            "--window", str(muc_window(p.big_occupants, p.muc_window)), *timed]),
        Job("join", "muc", ["--rooms", "1", "--occupants", str(p.join_occupants),
                            "--join-only", "--presence-broadcast", "all",
                            "--room-prefix", "joinroom"]),
        Job("pep", "pep", pep),
    ]
    return [job for job in jobs if job.label in workloads]


def scaling_jobs(p: Params) -> list[Job]:
    """muc at growing room sizes (5 senders), idle at growing connection counts."""
    jobs = []
    for occupants in p.scaling_occupants:
        jobs.append(Job(f"muc M={occupants}", "muc", [
            "--rooms", "1", "--occupants", str(occupants), "--senders", str(p.muc_senders),
            "--window", str(muc_window(occupants, p.muc_window)),
            "--duration", str(p.duration), "--warmup", str(p.warmup),
        ]))
    for clients in p.scaling_idle:
        jobs.append(Job(f"idle N={clients}", "idle", ["--clients", str(clients)]))
    return jobs


# -- the table ---------------------------------------------------------------------

# (row label, job label, result key, key shown in brackets or None, "high"/"low" is better)
ROWS = [
    ("logins/s, {login} at concurrency 50", "login", "logins_per_s", None, "high"),
    ("login time p99 (ms)", "login", "p99_ms", None, "low"),
    ("presence storm: {storm} users × {contacts} mutual contacts log in at once, "
     "presence stanzas delivered/s", "storm", "presence_per_s", None, "high"),
    ("logins/s during that storm", "storm", "logins_per_s", None, "high"),
    ("presence storm: s until every user has seen all its online contacts "
     "(per-user p99, ms)", "storm", "settle_seconds", "user_settle_p99_ms", "low"),
    ("idle memory, {idle} connections, KiB per connection", "idle", "kib_per_connection",
     None, "low"),
    ("chat, {pairs} pairs, messages/s (p99 ms)", "chat", "delivered_per_s", "p99_ms", "high"),
    ("MUC, 1 room × {occupants}, delivered copies/s (p99 ms)", "muc", "delivered_per_s",
     "p99_ms", "high"),
    ("MUC, 1 room × {big}, delivered copies/s (p99 ms)", "muc-big", "delivered_per_s",
     "p99_ms", "high"),
    ("MUC, s for {join} occupants to join one room (everyone's presence to everyone)",
     "join", "join_seconds", None, "low"),
    ("chat p99 (ms) at equal offered rate", "chat@rate", "p99_ms", None, "low"),
    ("muc p99 (ms) at equal offered rate", "muc@rate", "p99_ms", None, "low"),
    ("pep notifications/s (distinct; p99 ms)", "pep", "notifications_per_s", "p99_ms", "high"),
    ("pep notification stanzas/s (all copies)", "pep", "notification_stanzas_per_s", None,
     "high"),
    ("pep publishes/s", "pep", "publishes_per_s", None, "high"),
]


def fmt(value: Any) -> str:
    """A table cell."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def spread(values: list[Any]) -> str:
    """One figure, or the range ``low–high`` over the rounds."""
    numbers = [v for v in values if isinstance(v, int | float)]
    if not numbers:
        return "-"
    low, high = min(numbers), max(numbers)
    return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"


def row_label(label: str, p: Params) -> str:
    """Fill the sizes of this run into a row label."""
    return label.format(login=p.login_clients, storm=p.storm_users, contacts=p.storm_contacts,
                        idle=f"{p.idle_clients:,}", pairs=p.chat_pairs, occupants=p.muc_occupants,
                        big=f"{p.big_occupants:,}", join=f"{p.join_occupants:,}")


def comparison_table(runs: dict, servers: list[str], p: Params) -> str:
    """Markdown: workload rows × server columns (ranges over the rounds), best-vs-best ratios."""
    ours = [s for s in XMPPD_VARIANTS if s in servers]
    others = [s for s in ("ejabberd", "prosody") if s in servers]
    pairs = [(x, o) for x in ours for o in others]
    head = ["workload", *servers, *(f"{x}/{o} (best)" for x, o in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, job, key, extra, better in ROWS:
        values = {s: [r.get(key) for r in runs.get((job, s), []) if "error" not in r]
                  for s in servers}
        if not any(values.values()):
            continue
        row = [row_label(label, p)]
        for s in servers:
            cell = spread(values[s])
            if extra is not None and cell != "-":
                seconds = [r.get(extra) for r in runs.get((job, s), []) if "error" not in r]
                cell += f" ({spread(seconds)})"
            row.append(cell)
        pick = max if better == "high" else min
        for ours_name, other in pairs:
            x = [v for v in values[ours_name] if isinstance(v, int | float)]
            o = [v for v in values[other] if isinstance(v, int | float)]
            row.append(fmt(pick(x) / pick(o)) if x and o and pick(o) else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def noise_table(table: dict, servers: list[str]) -> str:
    """Markdown: CPU the rest of the machine used during each run (cores; 0 = undisturbed)."""
    jobs = list(dict.fromkeys(job for job, _ in table))
    lines = ["| run | " + " | ".join(f"{s} server CPU / other CPU" for s in servers) + " |",
             "|" + "---|" * (len(servers) + 1)]
    for job in jobs:
        cells = []
        for s in servers:
            r = table.get((job, s), {})
            cells.append(f"{fmt(r.get('server_cpu'))} / {fmt(r.get('other_cpu'))}")
        lines.append(f"| {job} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_table(table: dict, jobs: list[Job], servers: list[str]) -> str:
    """Markdown: one row per (job, server)."""
    head = ["run", "server", "delivered/s", "p50 ms", "p99 ms", "KiB/conn", "server CPU",
            "set-up s", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for job in jobs:
        for s in servers:
            r = table.get((job.label, s))
            if r is None:
                continue
            notes = []
            if "error" in r:
                notes.append("error: " + r["error"][:80])
            for key in ("error_stanzas", "connections_lost"):
                if r.get(key):
                    notes.append(f"{key}={r[key]}")
            window = r.get("params", {}).get("window")
            if window:
                notes.append(f"window {window}")
            lines.append("| " + " | ".join([
                job.label, s, fmt(r.get("delivered_per_s")), fmt(r.get("p50_ms")),
                fmt(r.get("p99_ms")), fmt(r.get("kib_per_connection")), fmt(r.get("server_cpu")),
                fmt(r.get("join_seconds")), "; ".join(notes),
            ]) + " |")
    return "\n".join(lines)


def machine() -> str:
    """Date, cores, CPU model, Python, Prosody presence: the header of a recorded table."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {os.cpu_count()} cores ({model}); Python {platform.python_version()}; "
            f"load average before the run {os.getloadavg()[0]:.2f}")


# -- main ---------------------------------------------------------------------------


def interrupted(signum: int, frame: Any) -> None:
    """SIGTERM: unwind like Ctrl-C so that the servers are stopped."""
    raise KeyboardInterrupt


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small, short smoke run")
    ap.add_argument("--scaling", action="store_true", help="scaling runs instead of the table")
    ap.add_argument("--servers", default="xmppd,prosody,ejabberd",
                    help="comma-separated, of xmppd, xmppd-no-mam (archive off), prosody, ejabberd")
    ap.add_argument("--plain", action="store_true",
                    help="plain TCP and SASL PLAIN (the old mode) instead of STARTTLS + "
                    "SCRAM-SHA-256")
    ap.add_argument("--idle-clients", type=int,
                    help="connections of the idle run (19,800 needs `ulimit -n` above 20,000 "
                    "for the server and the generator; see benchmarks/README.md)")
    ap.add_argument("--source-addresses", type=int, default=0, metavar="K",
                    help="the generator's connections come from 127.0.0.2..127.0.0.K+1")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated subset of " + ",".join(WORKLOADS)
                    + " (the @rate runs follow chat and muc)")
    ap.add_argument("--duration", type=float, help="measured seconds per timed workload")
    ap.add_argument("--repeat", type=int, default=1,
                    help="interleaved rounds (the table shows the range over them)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--loadgen-cpu", type=int, default=1)
    ap.add_argument("--python", default=sys.executable, help="for twistd and the generator")
    ap.add_argument("--reference-features", choices=["bare", "full"], default="bare",
                    help="bare: Prosody and ejabberd without archiving, carbons, stream "
                    "management, CSI and blocking (the issue 17 table); full: with them, "
                    "as xmppd runs by default (every chat message archived)")
    ap.add_argument("--prosody-auth", default="internal_hashed",
                    choices=["internal_hashed", "internal_plain"])
    ap.add_argument("--xmppd-muc-limit", action="store_true",
                    help="xmppd with its default MUC flood limit, 5 msg/s per occupant "
                    "(Prosody has none)")
    ap.add_argument("--job-timeout", type=float, default=900.0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument("--json", help="write every run's JSON line to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the comparison (or the scaling runs) and print markdown tables."""
    args = parser().parse_args(argv)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        print(f"[compare] unknown workloads {unknown}; known: {', '.join(WORKLOADS)}",
              file=sys.stderr)
        return 2
    params = Params.quick() if args.quick else Params()
    if args.duration:
        params.duration = args.duration
    if args.idle_clients:
        params.idle_clients = args.idle_clients
    raise_file_limit()
    signal.signal(signal.SIGTERM, interrupted)
    base = Path(tempfile.mkdtemp(prefix="xmppd-bench-"))
    servers: list[Server] = []
    wanted = args.servers.split(",")
    if "xmppd" in wanted:
        servers.append(XmppdServer(base / "xmppd", args.server_cpu, args.python,
                                   muc_limit=args.xmppd_muc_limit))
    if "xmppd-no-mam" in wanted:
        servers.append(XmppdServer(base / "xmppd-no-mam", args.server_cpu, args.python,
                                   muc_limit=args.xmppd_muc_limit, disabled_modules=("mam",),
                                   name="xmppd-no-mam"))
    if "prosody" in wanted:
        if ProsodyServer.available():
            extra = PROSODY_FEATURES if args.reference_features == "full" else ()
            servers.append(ProsodyServer(base / "prosody", args.server_cpu, args.prosody_auth,
                                         extra_modules=extra))
        else:
            print("[compare] prosody is not installed (apt-get install prosody): skipped",
                  file=sys.stderr)
    if "ejabberd" in wanted:
        usable, why = EjabberdServer.available()
        if usable:
            servers.append(EjabberdServer(base / "ejabberd", args.server_cpu,
                                          features=args.reference_features == "full"))
        else:
            print(f"[compare] ejabberd skipped: {why}", file=sys.stderr)
    driver = Driver(args, servers)
    names = [s.name for s in servers]
    header = machine()
    rates: dict[str, float] = {}
    try:
        if args.scaling:
            jobs = scaling_jobs(params)
            accounts = max([*params.scaling_idle,
                            *(o * params.muc_rooms for o in params.scaling_occupants)])
        else:
            jobs = standard_jobs(params, workloads=workloads)
            sizes = {"login": params.login_clients, "idle": params.idle_clients,
                     "chat": 2 * params.chat_pairs, "muc": params.muc_rooms * params.muc_occupants,
                     "pep": params.pep_contacts + 1, "storm": params.storm_users,
                     "muc-big": params.big_occupants, "join": params.join_occupants}
            accounts = max(sizes[w] for w in workloads)
        for server in servers:
            driver.register(server, accounts)
        table = driver.run_jobs(jobs)
        if not args.scaling:
            for name, key in (("chat", "delivered_per_s"), ("muc", "sent_per_s")):
                figures = [table.get((name, s), {}).get(key) for s in names]
                figures = [f for f in figures if f]
                if figures:
                    rates[name] = round(params.rate_share * min(figures), 1)
            if rates:
                driver.log("equal offered load: "
                           + ", ".join(f"{name} {rate} msg/s" for name, rate in rates.items()))
                table.update(driver.run_jobs(standard_jobs(params, rates)))
    except KeyboardInterrupt:
        print("[compare] interrupted", file=sys.stderr)
        return 130
    except ServerError as e:
        print(f"[compare] {e}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.stop()
        if args.json:
            Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in driver.results))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(base)], check=False)
        else:
            print(f"[compare] kept {base}", file=sys.stderr)
    print(f"Measured {header}.")
    print(f"Parameters: {params}; "
          + ("plain TCP, SASL PLAIN" if args.plain else "STARTTLS + SCRAM-SHA-256")
          + f"; {args.repeat} interleaved round(s).")
    if args.scaling:
        print(scaling_table(table, jobs, names))
    else:
        print(comparison_table(driver.runs, names, params))
        failed = [(job, s, r["error"]) for (job, s), r in table.items() if "error" in r]
        if failed:
            print("\nRuns that failed (their cells are '-'):\n")
            for job, s, error in failed:
                print(f"* {s} {job}: {error[:300]}")
        print("\nCPU use during the measured interval (cores):\n")
        print(noise_table(table, names))
        if rates:
            print("\nEqual offered load (rate jobs): "
                  + ", ".join(f"{name} {rate} msg/s" for name, rate in rates.items()) + " sent.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
