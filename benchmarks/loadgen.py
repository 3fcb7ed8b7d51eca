"""XMPP load generator: one workload per run, one JSON line of figures.

Workloads (``python benchmarks/loadgen.py WORKLOAD --help`` for parameters):

* ``register`` — create the accounts ``PREFIX0 .. PREFIX{N-1}`` by in-band
  registration (XEP-0077); existing ones are left alone.
* ``login`` — N clients connect, authenticate (SASL PLAIN) and bind, at most
  C at a time: logins/s and per-login time p50/p99.
* ``idle`` — N clients log in and send initial presence; the server's VmRSS
  (``/proc/PID/status``) before and after gives the memory per connection.
* ``chat`` — P pairs send each other chat messages for D seconds, each keeping
  a window of W messages outstanding (or, with ``--rate``, at a fixed offered
  rate): delivered messages/s and latency p50/p99.
* ``muc`` — R rooms of M occupants, S senders in each room keeping W
  messages outstanding (or ``--rate``): delivered groupchat stanzas/s
  (every occupant's copy counts) and latency p50/p99.
* ``pep`` — one owner and C contacts in mutual presence subscription, each
  contact online with XEP-0115 caps announcing ``urn:xmpp:bench:pep+notify``;
  the owner publishes to that PEP node (XEP-0163) keeping W publishes
  outstanding: notifications/s received by all contacts, publishes/s and
  notification latency p50/p99.

The generator is built to cost far less per stanza than a server: stanzas go
out as pre-serialised bytes and come in counted by a byte scan (see
:mod:`benchclient`). Latency is measured from a ``time.monotonic_ns()``
timestamp carried in the message body. ``--cpu`` pins the generator to one
core (the comparison driver pins the server to another).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from benchclient import BenchConnection, HandshakeError, connect, is_result

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
        conn = await connect(args.host, args.port, args.domain)
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


# -- workloads -------------------------------------------------------------------


async def workload_register(args: argparse.Namespace) -> dict[str, Any]:
    """Create accounts by in-band registration (existing ones count as present)."""

    async def one(index: int) -> bool:
        conn = await connect(args.host, args.port, args.domain)
        try:
            return await conn.register(username(args, index), args.password)
        finally:
            conn.close()

    meter = Meter(args.server_pid)
    results = await run_bounded((one(i) for i in range(args.start, args.count)), args.concurrency)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    return {
        "created": sum(1 for r in results if r is True),
        "existing": sum(1 for r in results if r is False),
        **meter.figures(),
    }


async def workload_login(args: argparse.Namespace) -> dict[str, Any]:
    """N logins (connect, SASL PLAIN, bind), C at a time."""
    meter = Meter(args.server_pid)
    conns, times = await login_many(args, range(args.clients), presence=False)
    figures = meter.figures()
    result = {
        "logins_per_s": round(args.clients / figures["seconds"], 1),
        **percentiles(times),
        **figures,
        **problems(conns),
    }
    close_all(conns)
    await asyncio.sleep(0.5)
    return result


async def workload_idle(args: argparse.Namespace) -> dict[str, Any]:
    """N logged-in, present, silent clients: the server's memory per connection.

    With ``--sm`` each enables stream management (XEP-0198) and, with
    ``--unacked K``, gets K chat messages from its partner (clients pair
    up) that it never acknowledges: the server keeps K stanzas per session.
    """
    before = rss_kib(args.server_pid)
    meter = Meter(args.server_pid)
    conns, _ = await login_many(args, range(args.clients), presence=True)
    figures = meter.figures()
    if args.sm:
        await run_bounded((conn.enable_sm(answer=False) for conn in conns), args.concurrency)
        for number, conn in enumerate(conns):
            partner = conns[number ^ 1] if (number ^ 1) < len(conns) else conn
            for i in range(args.unacked):
                conn.write(f"<message to='{partner.jid}' type='chat'><body>{i}:{number}</body>"
                           "</message>".encode())
    await asyncio.sleep(args.settle)
    after = rss_kib(args.server_pid)
    result: dict[str, Any] = {
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (
            round((after - before) / args.clients, 2) if before and after else None
        ),
        "logins_per_s": round(args.clients / figures["seconds"], 1),
        "connected": sum(1 for c in conns if not c.lost),
        "sm": args.sm,
        "unacked_per_session": args.unacked if args.sm else 0,
        **problems(conns),
    }
    close_all(conns)
    await asyncio.sleep(0.5)
    return result


async def workload_chat(args: argparse.Namespace) -> dict[str, Any]:
    """P pairs of clients sending each other chat messages."""
    conns, _ = await login_many(args, range(2 * args.pairs), presence=True)
    if args.sm:  # XEP-0198: the server asks for acks, the clients answer
        await run_bounded((conn.enable_sm() for conn in conns), args.concurrency)
    run = Run(args.window, args.rate)
    try:
        for number, conn in enumerate(conns):
            partner = conns[number ^ 1]
            head = f"<message to='{partner.jid}' type='chat'>".encode()
            conn.tag = Sender(run, conn, number, head)

        def on_bodies(conn: BenchConnection, matches: list[tuple[bytes, bytes]]) -> None:
            run.record(matches)
            # Everything a client receives comes from its partner.
            conn.tag.partner.acked(len(matches))

        for number, conn in enumerate(conns):
            conn.tag.partner = conns[number ^ 1].tag
            conn.start_counting(on_bodies, run.errors_received)
        return await timed_run(args, run, conns)
    finally:
        close_all(conns)


async def workload_muc(args: argparse.Namespace) -> dict[str, Any]:
    """R rooms of M occupants; S senders per room."""
    rooms = [f"{args.room_prefix}{r}@{args.muc_domain}" for r in range(args.rooms)]
    conns, _ = await login_many(args, range(args.rooms * args.occupants), presence=True)
    run = Run(args.window, args.rate)
    try:
        meter = Meter(args.server_pid)
        by_room = [
            conns[r * args.occupants : (r + 1) * args.occupants] for r in range(args.rooms)
        ]

        async def found_room(room: str, members: list[BenchConnection]) -> None:
            owner = members[0]
            await owner.join_room(room, "n0")
            await owner.configure_room(room, {"muc#roomconfig_presencebroadcast": "moderator"})

        results = await asyncio.gather(
            *(found_room(room, members) for room, members in zip(rooms, by_room, strict=True)),
            return_exceptions=True,
        )
        joins = [
            member.join_room(room, f"n{j}")
            for room, members in zip(rooms, by_room, strict=True)
            for j, member in enumerate(members)
            if j > 0
        ]
        results += await run_bounded(joins, args.concurrency)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        join_seconds = meter.figures()["seconds"]

        number = 0
        for room, members in zip(rooms, by_room, strict=True):
            head = f"<message to='{room}' type='groupchat'>".encode()
            for member in members[: args.senders]:
                member.tag = Sender(run, member, number, head)
                number += 1

        def on_bodies(conn: BenchConnection, matches: list[tuple[bytes, bytes]]) -> None:
            run.record(matches)
            sender = conn.tag
            if sender is not None:
                marker = sender.marker
                own = sum(1 for _, who in matches if who == marker)
                if own:
                    sender.acked(own)

        for conn in conns:
            conn.start_counting(on_bodies, run.errors_received)
        result = await timed_run(args, run, conns)
        result["join_seconds"] = join_seconds
        return result
    finally:
        close_all(conns)


# -- PEP (XEP-0163) notifications --------------------------------------------------

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_CAPS = "http://jabber.org/protocol/caps"
PEP_NODE = "urn:xmpp:bench:pep"
CAPS_NODE = "https://xmppd.example/bench"
CAPS_IDENTITIES = (("client", "bot", "", "xmppd bench"),)
CAPS_FEATURES = (NS_DISCO_INFO, PEP_NODE, PEP_NODE + "+notify")
PUBLISH_TIMEOUT = 10.0
SUBSCRIBE_WAIT = 10.0
ATTRIBUTE = re.compile(rb"""([\w:.-]+)\s*=\s*(?:'([^']*)'|"([^"]*)")""")
ROSTER_ITEM = re.compile(rb"<item\b[^>]*>")
SUBSCRIBE = re.compile(rb"<presence\b[^>]*\btype=['\"]subscribe['\"][^>]*>")
# What a contact scans for: one event element per notification, the time
# stamp and number of the item in it (not an attribute named 'stamp':
# Prosody's archive storage overwrites that one), and the iq and query start
# tags of the server's disco#info query (answered on the spot).
EVENT = b"/protocol/pubsub#event"
ITEM_SENT = re.compile(rb"<entry\b[^>]*\bsent=['\"](\d+):(\d+)['\"]")
IQ_TAGS = re.compile(rb"<iq\b([^>]*)>|<query\b([^>]*)>")
PUBLISH_ANSWER = re.compile(rb"<iq\b[^>]*\bid=['\"]p\d+['\"]")
XML_ESCAPES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&apos;": "'", "&quot;": '"'}


def caps_ver(identities: Iterable[tuple[str, str, str, str]], features: Iterable[str]) -> str:
    """The XEP-0115 (§5.1) verification string of a disco#info result, SHA-1, base64."""
    text = "".join(f"{c}/{t}/{lang}/{name}<" for c, t, lang, name in sorted(identities))
    text += "".join(f"{feature}<" for feature in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


CAPS_VER = caps_ver(CAPS_IDENTITIES, CAPS_FEATURES)


def xml_attrs(tag: bytes) -> dict[str, str]:
    """The attributes of a start tag (or of the inside of one), unescaped."""
    attrs = {}
    for name, single, double in ATTRIBUTE.findall(tag):
        value = (single or double).decode(errors="replace")
        if "&" in value:
            value = re.sub("&(amp|lt|gt|apos|quot);", lambda m: XML_ESCAPES[m.group(0)], value)
        attrs[name.decode()] = value
    return attrs


def xml_escape(value: str) -> str:
    """Escape for an attribute value in single quotes."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;"))


def caps_presence() -> bytes:
    """Available presence with the contact's XEP-0115 caps."""
    return (
        f"<presence><c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' "
        f"ver='{CAPS_VER}'/></presence>"
    ).encode()


def disco_info_result(iq: dict[str, str], node: str | None) -> bytes:
    """Our answer to a disco#info query: the identity and the caps features."""
    to = f" to='{xml_escape(iq['from'])}'" if iq.get("from") else ""
    at = f" node='{xml_escape(node)}'" if node else ""
    identities = "".join(
        f"<identity category='{c}' type='{t}' name='{name}'/>"
        for c, t, _, name in CAPS_IDENTITIES
    )
    features = "".join(f"<feature var='{f}'/>" for f in CAPS_FEATURES)
    return (
        f"<iq type='result' id='{xml_escape(iq.get('id', ''))}'{to}>"
        f"<query xmlns='{NS_DISCO_INFO}'{at}>{identities}{features}</query></iq>"
    ).encode()


class PepRun:
    """Shared state of the pep workload."""

    def __init__(self, window: int, contacts: int, owner: str, domain: str):
        self.window = window
        self.contacts = contacts
        self.owner = owner
        self.domain = domain
        self.sending = False
        self.measuring = False
        self.publishing_started = False
        self.delivered = 0
        self.distinct = 0
        self.published = 0
        self.errors = 0
        self.latencies: list[int] = []
        self.notified = 0
        self.notified_before_publish = 0
        self.all_notified = asyncio.Event()
        self.disco_queries: Counter[str] = Counter()

    def first_notification(self) -> None:
        """A contact got its first notification."""
        self.notified += 1
        if not self.publishing_started:
            self.notified_before_publish += 1
        if self.notified == self.contacts:
            self.all_notified.set()

    def note_disco(self, contact: BenchConnection, iq: dict[str, str], node: str | None) -> None:
        """Count a disco#info query by who asked (relative to the contact) and for what."""
        sender = iq.get("from", "")
        bare = contact.jid.split("/")[0]
        if not sender:
            who = "no from"
        elif sender == self.owner:
            who = "the owner's bare JID"
        elif sender.split("/")[0] == self.owner:
            who = "an owner's full JID"
        elif sender == bare:
            who = "the contact's own bare JID"
        elif sender == self.domain:
            who = "the server"
        else:
            who = sender
        what = "node#ver" if node == f"{CAPS_NODE}#{CAPS_VER}" else (node or "no node")
        self.disco_queries[f"from {who}, {what}"] += 1

    def errors_received(self, conn: BenchConnection, count: int) -> None:
        """Error stanzas (refused publishes): counted (their window slots come back anyway)."""
        self.errors += count


class PepContact:
    """A contact's receiving side: answers disco#info queries, counts notifications.

    A notification is distinct when its item number is above the last one this
    contact saw (items are numbered in publishing order); another copy of an
    item already seen (Prosody sends one to the bare and one to the full JID)
    only counts as a notification stanza.
    """

    def __init__(self, run: PepRun, conn: BenchConnection):
        self.run = run
        self.conn = conn
        self.notifications = 0
        self.last_item = 0
        self.pending_get: dict[str, str] | None = None

    def on_region(self, conn: BenchConnection, region: bytes) -> None:
        """A run of complete tags: count notifications, answer disco#info queries."""
        run = self.run
        events = region.count(EVENT)
        if events:
            if self.notifications == 0:
                run.first_notification()
            self.notifications += events
            if run.measuring:
                run.delivered += events
        if b"<entry" in region:
            now = time.monotonic_ns()
            last = self.last_item
            for stamp, number in ITEM_SENT.findall(region):
                item = int(number)
                if item > last:
                    last = item
                    if run.measuring:
                        run.distinct += 1
                        run.latencies.append(now - int(stamp))
            self.last_item = last
        if b"<iq" in region or self.pending_get is not None:
            for iq, query in IQ_TAGS.findall(region):
                if iq:
                    attrs = xml_attrs(iq)
                    self.pending_get = attrs if attrs.get("type") == "get" else None
                elif query:
                    get, self.pending_get = self.pending_get, None
                    if get is not None and NS_DISCO_INFO.encode() in query:
                        node = xml_attrs(query).get("node")
                        conn.write(disco_info_result(get, node))
                        run.note_disco(conn, get, node)


class PepPublisher:
    """The owner: publishes items to PEP_NODE keeping a window of publishes outstanding.

    Items are numbered from the wall clock in microseconds, so that numbers
    grow across runs too (the server may resend the last item of a run before).
    """

    def __init__(self, run: PepRun, conn: BenchConnection, payload: int):
        self.run = run
        self.conn = conn
        self.number = time.time_ns() // 1000
        self.outstanding = 0
        head = f"<entry xmlns='{PEP_NODE}' sent='%d:%d'>"
        sample = (head % (time.monotonic_ns(), self.number) + "</entry>").encode()
        pad = "x" * max(0, payload - len(sample))
        self.template = (
            f"<iq type='set' id='p%d'><pubsub xmlns='{NS_PUBSUB}'>"
            f"<publish node='{PEP_NODE}'><item id='current'>{head}{pad}</entry>"
            "</item></publish></pubsub></iq>"
        ).encode()

    def stanza(self) -> bytes:
        """The next publish, stamped now."""
        self.number += 1
        return self.template % (self.number, time.monotonic_ns(), self.number)

    def send(self, count: int) -> None:
        """Send ``count`` publishes (one write)."""
        if count <= 0:
            return
        self.conn.write(b"".join([self.stanza() for _ in range(count)]))
        self.outstanding += count

    def on_region(self, conn: BenchConnection, region: bytes) -> None:
        """Publish results (or errors) came back: refill the window."""
        count = len(PUBLISH_ANSWER.findall(region))
        if not count:
            return
        self.outstanding -= count
        run = self.run
        if run.measuring:
            run.published += count
        if run.sending:
            self.send(min(count, run.window - self.outstanding))


async def roster_states(conn: BenchConnection, iq_id: str) -> dict[str, str]:
    """The subscription state of every item of the connected user's roster."""
    answer = await conn.iq(
        iq_id, f"<iq type='get' id='{iq_id}'><query xmlns='jabber:iq:roster'/></iq>".encode()
    )
    if not is_result(answer):
        raise HandshakeError(f"roster get refused: {answer[:300]!r}")
    states = {}
    for tag in ROSTER_ITEM.findall(answer):
        attrs = xml_attrs(tag)
        if "jid" in attrs:
            states[attrs["jid"]] = attrs.get("subscription", "none")
    return states


async def ensure_subscriptions(args: argparse.Namespace, contacts: list[int]) -> int:
    """Mutual presence subscription between account 0 and every contact; how many were made.

    Kept in the server's data, so only the first run on a server does the
    exchange (subscribe/subscribed both ways, on connections of their own
    with resource ``setup``, closed afterwards).
    """
    setup = argparse.Namespace(**{**vars(args), "resource": "setup"})
    owner_bare = f"{username(args, 0)}@{args.domain}"
    wanted = {f"{username(args, i)}@{args.domain}": i for i in contacts}
    (owner,), _ = await login_many(setup, [0], presence=True)
    conns = [owner]
    try:
        states = await roster_states(owner, "r0")
        missing = [jid for jid in wanted if states.get(jid) != "both"]
        if not missing:
            return 0
        peers, _ = await login_many(setup, [wanted[jid] for jid in missing], presence=True)
        conns += peers
        owner.write(b"".join(f"<presence to='{jid}' type='subscribe'/>".encode()
                             for jid in missing))

        async def contact_side(conn: BenchConnection) -> None:
            try:  # the owner's request first, so that our approval is not a pre-approval
                await asyncio.wait_for(conn.expect(SUBSCRIBE, "subscribe"), SUBSCRIBE_WAIT)
            except TimeoutError:
                pass  # approved before: the server answered for us
            conn.write(f"<presence to='{owner_bare}' type='subscribed'/>"
                       f"<presence to='{owner_bare}' type='subscribe'/>".encode())

        async def owner_side() -> None:
            left = set(missing)
            while left:
                try:
                    tag = await asyncio.wait_for(owner.expect(SUBSCRIBE, "subscribe"),
                                                 SUBSCRIBE_WAIT)
                except TimeoutError:
                    return  # the rest were approved before
                sender = xml_attrs(tag).get("from", "").split("/")[0]
                if sender in left:
                    left.discard(sender)
                    owner.write(f"<presence to='{sender}' type='subscribed'/>".encode())

        await asyncio.gather(owner_side(), *(contact_side(c) for c in peers))
        deadline = time.monotonic() + 2 * SUBSCRIBE_WAIT
        attempt = 0
        while True:
            attempt += 1
            states = await roster_states(owner, f"r{attempt}")
            still = [jid for jid in wanted if states.get(jid) != "both"]
            if not still:
                return len(missing)
            if time.monotonic() > deadline:
                raise HandshakeError(
                    f"{len(still)} contacts are not in mutual subscription with {owner_bare} "
                    f"after the set-up, e.g. {still[0]}: {states.get(still[0], 'no item')}"
                )
            await asyncio.sleep(0.2)
    finally:
        close_all(conns)
        await asyncio.sleep(0.5)  # let the server end the set-up sessions


async def workload_pep(args: argparse.Namespace) -> dict[str, Any]:
    """PEP notifications from one owner to C contacts with +notify caps."""
    contacts_range = range(1, args.contacts + 1)
    meter = Meter(args.server_pid)
    made = await ensure_subscriptions(args, list(contacts_range))
    setup_seconds = meter.figures()["seconds"]
    owner_jid = f"{username(args, 0)}@{args.domain}"
    run = PepRun(args.window, args.contacts, owner_jid, args.domain)
    conns: list[BenchConnection] = []
    try:
        (owner,), _ = await login_many(args, [0], presence=True)
        conns.append(owner)
        contacts, _ = await login_many(args, contacts_range, presence=False)
        conns += contacts
        presence = caps_presence()
        for conn in contacts:
            conn.tag = PepContact(run, conn)
            conn.start_tag_counting(conn.tag.on_region)
            conn.write(presence)
        await asyncio.sleep(args.settle)

        publisher = PepPublisher(run, owner, args.payload)
        run.publishing_started = True
        started = time.monotonic()
        try:
            first = publisher.stanza()
            answer = await asyncio.wait_for(owner.iq(f"p{publisher.number}", first),
                                            PUBLISH_TIMEOUT)
        except TimeoutError:
            raise HandshakeError(
                f"no answer to a PEP publish to {PEP_NODE} within {PUBLISH_TIMEOUT:g} s"
            ) from None
        if not is_result(answer):
            raise HandshakeError(
                "the server refused a PEP publish (XEP-0163), so the pep workload cannot run "
                f"against it: {answer[:400].decode(errors='replace')}"
            )
        owner.start_tag_counting(publisher.on_region, run.errors_received)
        run.sending = True
        publisher.send(run.window)
        try:
            await asyncio.wait_for(run.all_notified.wait(), args.warmup_timeout)
        except TimeoutError:
            silent = sum(1 for c in contacts if c.tag.notifications == 0)
            raise HandshakeError(
                f"{silent} of {args.contacts} contacts had no PEP notification "
                f"{args.warmup_timeout:g} s after the first publish (disco#info queries "
                f"answered: {dict(run.disco_queries) or 'none'}); does the server "
                "resolve XEP-0115 caps and honour +notify?"
            ) from None
        warmup_seconds = round(time.monotonic() - started, 3)
        await asyncio.sleep(args.warmup)

        meter = Meter(args.server_pid)
        run.measuring = True
        await asyncio.sleep(args.duration)
        run.measuring = False
        figures = meter.figures()
        run.sending = False
        await asyncio.sleep(args.drain)
        seconds = figures["seconds"]
        result: dict[str, Any] = {
            "notifications_per_s": round(run.distinct / seconds, 1),
            "notification_stanzas_per_s": round(run.delivered / seconds, 1),
            "publishes_per_s": round(run.published / seconds, 1),
            "fanout": round(run.distinct / run.published, 2) if run.published else None,
            "copies_per_notification": (
                round(run.delivered / run.distinct, 2) if run.distinct else None
            ),
            # distinct notifications per second of server CPU: comparable across
            # runs where other processes took part of the server's core
            "notifications_per_server_cpu_s": (
                round(run.distinct / (figures["server_cpu"] * seconds), 1)
                if figures.get("server_cpu") else None
            ),
            **percentiles(run.latencies),
            **figures,
            "error_stanzas": run.errors,
            "subscriptions_made": made,
            "setup_seconds": setup_seconds,
            "first_notification_seconds": warmup_seconds,
            "notified_before_first_publish": run.notified_before_publish,
            "disco_queries": dict(run.disco_queries),
            "caps_ver": CAPS_VER,
        }
        result.update(problems(conns))
        return result
    finally:
        close_all(conns)


WORKLOADS = {
    "register": workload_register,
    "login": workload_login,
    "idle": workload_idle,
    "chat": workload_chat,
    "muc": workload_muc,
    "pep": workload_pep,
}


# -- command line ------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1")
    common.add_argument("--port", type=int, default=5222)
    common.add_argument("--domain", default="localhost")
    common.add_argument("--muc-domain", default="conference.localhost")
    common.add_argument("--prefix", default="bench", help="account names: PREFIX0, PREFIX1, ...")
    common.add_argument("--password", default="bench-pass")
    common.add_argument("--resource", default="bench")
    common.add_argument("--concurrency", type=int, default=50, help="set-ups in flight at once")
    common.add_argument("--server-pid", type=int, help="for RSS and CPU figures")
    common.add_argument("--cpu", type=int, help="pin the generator to this core")
    common.add_argument("--label", default="", help="copied into the JSON line (server name)")

    timed = argparse.ArgumentParser(add_help=False)
    timed.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    timed.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    timed.add_argument("--drain", type=float, default=1.0, help="seconds to let replies arrive")
    timed.add_argument("--window", type=int, default=10, help="outstanding messages per sender")
    timed.add_argument(
        "--rate", type=float, help="offered messages/s in all (default: window-limited)"
    )

    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="workload", required=True)
    reg = sub.add_parser("register", parents=[common], help="create accounts (XEP-0077)")
    reg.add_argument("--count", type=int, default=1000, help="accounts PREFIX0..PREFIX{count-1}")
    reg.add_argument("--start", type=int, default=0)
    login = sub.add_parser("login", parents=[common], help="logins/s")
    login.add_argument("--clients", type=int, default=1000)
    idle = sub.add_parser("idle", parents=[common], help="server memory per connection")
    idle.add_argument("--clients", type=int, default=1000)
    idle.add_argument("--settle", type=float, default=3.0, help="seconds before reading RSS")
    idle.add_argument("--sm", action="store_true", help="enable stream management (XEP-0198)")
    idle.add_argument("--unacked", type=int, default=20,
                      help="with --sm: messages each client gets and never acknowledges")
    chat = sub.add_parser("chat", parents=[common, timed], help="one-to-one messages/s")
    chat.add_argument("--pairs", type=int, default=50)
    chat.add_argument("--sm", action="store_true",
                      help="enable stream management (XEP-0198) and answer the server's <r/>")
    muc = sub.add_parser("muc", parents=[common, timed], help="groupchat stanzas/s")
    muc.add_argument("--rooms", type=int, default=1)
    muc.add_argument("--occupants", type=int, default=50)
    muc.add_argument("--senders", type=int, default=5)
    muc.add_argument("--room-prefix", default="benchroom")
    pep = sub.add_parser("pep", parents=[common, timed], help="PEP notifications/s")
    pep.add_argument("--contacts", type=int, default=100,
                     help="accounts PREFIX1..PREFIX{contacts}; PREFIX0 is the owner")
    pep.add_argument("--payload", type=int, default=100,
                     help="bytes of each published item's payload element")
    pep.add_argument("--settle", type=float, default=1.0,
                     help="seconds between the contacts' caps presence and the first publish")
    pep.add_argument("--warmup-timeout", type=float, default=30.0,
                     help="fail when a contact has no notification this long after publishing")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one workload and print one JSON line; exit 1 if it could not run."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.workload == "pep" and (args.rate or args.contacts < 1):
        cli.error("pep: --contacts must be at least 1, and there is no --rate mode")
    pinned = pin_to_cpu(args.cpu)
    raise_file_limit()
    params = {
        k: v
        for k, v in vars(args).items()
        if k not in ("host", "password", "resource", "server_pid", "label", "prefix")
    }
    line: dict[str, Any] = {"workload": args.workload, "server": args.label, "pinned": pinned}
    try:
        line.update(asyncio.run(WORKLOADS[args.workload](args)))
        code = 0
    except (HandshakeError, OSError) as e:
        line["error"] = f"{type(e).__name__}: {e}"
        code = 1
    line["params"] = params
    print(json.dumps(line), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
