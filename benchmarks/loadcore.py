"""What every workload of loadgen.py uses: process figures, logging clients in, timed runs."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from benchclient import BenchConnection, connect

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- process figures -----------------------------------------------------------


def raise_file_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


def pin_to_cpu(cpu: int | None) -> bool:
    """Pin this process to one core; False when that is not possible."""
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError, ValueError):
        return False
    return True


def rss_kib(pid: int | None) -> int | None:
    """A process's resident set size in KiB (VmRSS), or None."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds used so far by a process (all threads), or None."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentiles(values_ns: list[int]) -> dict[str, float | None]:
    """p50 and p99 in milliseconds (None without samples)."""
    if not values_ns:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(values_ns)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return round(ordered[min(last, int(q * len(ordered)))] / 1e6, 3)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99)}


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and stolen by the hypervisor."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(f) for f in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


class Meter:
    """Wall time and CPU (generator, server, everything else) over one interval.

    ``other_cpu`` is what the rest of the machine used meanwhile (in cores):
    anything well above zero means the figures were disturbed.
    """

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid
        self.wall = time.monotonic()
        self.own = time.process_time()
        self.server = cpu_seconds(server_pid)
        self.busy, self.steal = machine_cpu_seconds()

    def figures(self) -> dict[str, Any]:
        """Elapsed seconds and CPU shares (in cores)."""
        wall = time.monotonic() - self.wall
        own = time.process_time() - self.own
        server_now = cpu_seconds(self.server_pid)
        busy, steal = machine_cpu_seconds()
        result: dict[str, Any] = {
            "seconds": round(wall, 3),
            "loadgen_cpu": round(own / wall, 3) if wall else None,
        }
        server = 0.0
        if self.server is not None and server_now is not None and wall:
            server = server_now - self.server
            result["server_cpu"] = round(server / wall, 3)
        if wall:
            other = max(0.0, busy - self.busy - server - own)
            result["other_cpu"] = round(other / wall, 3)
            result["steal_cpu"] = round((steal - self.steal) / wall, 3)
        return result


# -- connections -----------------------------------------------------------------


def username(args: argparse.Namespace, index: int) -> str:
    """The benchmark account name number ``index``."""
    return f"{args.prefix}{index}"


def source_host(args: argparse.Namespace, index: int) -> str | None:
    """The source address of connection ``index``: 127.0.0.2, 127.0.0.3, ... in turn.

    With ``--source-addresses K`` (K > 0) connections cycle through K loopback
    addresses, each with its own ~28,000 ephemeral ports; 0 lets the kernel choose.
    """
    count = getattr(args, "source_addresses", 0)
    if not count:
        return None
    return f"127.0.0.{2 + index % count}"


async def open_connection(args: argparse.Namespace, index: int = 0) -> BenchConnection:
    """A connection set up as the command line says (TLS, SASL mechanism, source address)."""
    return await connect(
        args.host, args.port, args.domain, tls=getattr(args, "tls", False),
        sasl=getattr(args, "sasl", "plain"), local_host=source_host(args, index),
    )


async def run_bounded(jobs: Iterable[Any], limit: int) -> list[Any]:
    """Await coroutines at most ``limit`` at a time; results (or exceptions) in order."""
    semaphore = asyncio.Semaphore(limit)

    async def bounded(job: Any) -> Any:
        async with semaphore:
            return await job

    return await asyncio.gather(*(bounded(job) for job in jobs), return_exceptions=True)


async def login_many(
    args: argparse.Namespace, indices: Iterable[int], presence: bool = True
) -> tuple[list[BenchConnection], list[int]]:
    """Log in one client per account index; connections and per-login times (ns).

    On any failure every connection opened is closed and the first error raised.
    """

    async def one(index: int) -> tuple[BenchConnection, int]:
        started = time.perf_counter_ns()
        conn = await open_connection(args, index)
        try:
            await conn.login(username(args, index), args.password, args.resource, presence)
        except BaseException:
            conn.close()
            raise
        return conn, time.perf_counter_ns() - started

    results = await run_bounded((one(i) for i in indices), args.concurrency)
    failures = [r for r in results if isinstance(r, BaseException)]
    conns = [r[0] for r in results if not isinstance(r, BaseException)]
    if failures:
        close_all(conns)
        raise failures[0]
    return conns, [r[1] for r in results]


def close_all(conns: Iterable[BenchConnection]) -> None:
    """End every stream."""
    for conn in conns:
        conn.close()


def problems(conns: Iterable[BenchConnection]) -> dict[str, Any]:
    """Connections lost unexpectedly and the stream errors received."""
    lost = 0
    errors: Counter[str] = Counter()
    for conn in conns:
        if conn.lost and not conn.lost_expected:
            lost += 1
        for error in conn.stream_errors:
            errors[error.decode(errors="replace")] += 1
    return {"connections_lost": lost, "stream_errors": dict(errors.most_common(5))}


# -- timed message workloads -----------------------------------------------------


class Run:
    """Shared state of a timed message workload (chat or muc)."""

    def __init__(self, window: int, rate: float | None):
        self.window = window
        self.rate = rate
        self.sending = False
        self.measuring = False
        self.delivered = 0
        self.sent = 0
        self.unsent_offers = 0
        self.errors = 0
        self.latencies: list[int] = []
        self.senders: list[Sender] = []

    def record(self, matches: list[tuple[bytes, bytes]]) -> None:
        """Count delivered bodies and their latencies (while measuring)."""
        if self.measuring:
            now = time.monotonic_ns()
            self.delivered += len(matches)
            self.latencies.extend([now - int(stamp) for stamp, _ in matches])

    def errors_received(self, conn: BenchConnection, count: int) -> None:
        """Error stanzas (refused messages): count them, give the window slots back."""
        self.errors += count
        if isinstance(conn.tag, Sender):
            conn.tag.acked(count)


class Sender:
    """One client sending pre-serialised messages with a window of outstanding ones."""

    def __init__(self, run: Run, conn: BenchConnection, number: int, head: bytes):
        self.run = run
        self.conn = conn
        self.number = number
        self.marker = b"%d" % number
        self.head = head + b"<body>"
        self.outstanding = 0
        run.senders.append(self)

    def send(self, count: int) -> None:
        """Send ``count`` messages stamped now (one write)."""
        if count <= 0:
            return
        stanza = b"%s%d:%d</body></message>" % (self.head, time.monotonic_ns(), self.number)
        self.conn.write(stanza * count)
        self.outstanding += count
        self.run.sent += count

    def acked(self, count: int) -> None:
        """``count`` of our messages arrived; in window mode send as many again."""
        self.outstanding -= count
        run = self.run
        if run.sending and run.rate is None:
            self.send(min(count, run.window - self.outstanding))


async def pace(run: Run) -> None:
    """Rate mode: share ``run.rate`` messages/s among the senders, window-capped."""
    last = time.monotonic()
    credit = 0.0
    turn = 0
    while run.sending:
        await asyncio.sleep(0.005)
        now = time.monotonic()
        credit += run.rate * (now - last)
        last = now
        due = int(credit)
        credit -= due
        senders = run.senders
        share, extra = divmod(due, len(senders))
        for offset in range(len(senders)):
            sender = senders[(turn + offset) % len(senders)]
            wanted = share + (1 if offset < extra else 0)
            count = min(wanted, run.window - sender.outstanding)
            run.unsent_offers += wanted - max(count, 0)
            sender.send(count)
        turn += extra


async def timed_run(
    args: argparse.Namespace, run: Run, conns: list[BenchConnection]
) -> dict[str, Any]:
    """Warm up, measure for ``args.duration`` seconds, drain; the figures."""
    run.sending = True
    pacer = None
    if run.rate is None:
        for sender in run.senders:
            sender.send(run.window)
    else:
        pacer = asyncio.ensure_future(pace(run))
    await asyncio.sleep(args.warmup)
    sent_before = run.sent
    meter = Meter(args.server_pid)
    run.measuring = True
    await asyncio.sleep(args.duration)
    run.measuring = False
    figures = meter.figures()
    sent = run.sent - sent_before
    run.sending = False
    if pacer is not None:
        await pacer
    await asyncio.sleep(args.drain)
    seconds = figures["seconds"]
    result = {
        "delivered_per_s": round(run.delivered / seconds, 1),
        "sent_per_s": round(sent / seconds, 1),
        **percentiles(run.latencies),
        **figures,
    }
    result["error_stanzas"] = run.errors
    if run.rate is not None:
        result["unsent_offers"] = run.unsent_offers
    result.update(problems(conns))
    return result
