"""The ``storm`` workload of loadgen.py: a presence storm after a restart.

N users (accounts ``PREFIX0 .. PREFIX{N-1}``), each in mutual presence
subscription with exactly K others: a ring where user ``i`` has the
contacts ``i±1 .. i±K/2`` (mod N), so K must be even and below N. The
subscriptions are made once per server (the server keeps them; later runs
check the rosters and skip the set-up) and nothing is stored elsewhere.

Then all N log in at once (bounded only by ``--concurrency``): connect,
STARTTLS/SASL as asked, bind, get the roster, send initial presence. Each
client counts the presence stanzas it receives and which contacts it has
seen available. Figures: logins/s, presence stanzas delivered/s, the time
until every user has seen available presence from all its K contacts (all
are online by then) and, per user, the time from its own initial presence
to its last contact's presence (p50/p99 in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from typing import Any

from benchclient import BenchConnection, HandshakeError
from loadcore import (
    Meter,
    close_all,
    login_many,
    open_connection,
    percentiles,
    problems,
    run_bounded,
    username,
)
from loadgen_pep import roster_states, xml_attrs

PRESENCE_TAG = re.compile(rb"<presence\b([^>]*?)/?>")
ROSTER_ITEM = re.compile(rb"<item\b([^>]*?)/?>")


def ring_contacts(index: int, users: int, contacts: int) -> list[int]:
    """The K contacts of user ``index`` in the ring: index±1 .. index±K/2 (mod N)."""
    half = contacts // 2
    return sorted({(index + d) % users for d in range(-half, half + 1) if d})


class Subscriber:
    """Set-up side of one user: answers subscription requests from its ring contacts.

    On ``subscribe`` from a contact: approve it, and ask back unless we
    already did. Both users of each missing pair ask (so a half-made pair is
    completed too). Roster pushes (RFC 6121 section 2.1.6) say when a contact's
    subscription has become ``both``: no polling.
    """

    def __init__(self, conn: BenchConnection, wanted: set[str], missing: set[str],
                 done: asyncio.Event):
        self.conn = conn
        self.wanted = wanted
        self.missing = set(missing)
        self.done = done
        self.asked: set[str] = set()
        if not self.missing:
            done.set()

    def ask(self, jids: list[str]) -> None:
        """Send ``subscribe`` to these contacts."""
        self.asked.update(jids)
        self.conn.write(b"".join(f"<presence to='{jid}' type='subscribe'/>".encode()
                                 for jid in jids))

    def on_region(self, conn: BenchConnection, region: bytes) -> None:
        """Answer every subscribe from a wanted contact; note roster pushes."""
        if b"<item" in region and self.missing:
            for inside in ROSTER_ITEM.findall(region):
                attrs = xml_attrs(inside)
                if attrs.get("subscription") == "both":
                    self.missing.discard(attrs.get("jid", ""))
            if not self.missing:
                self.done.set()
        if b"subscribe" not in region:
            return
        out = []
        for inside in PRESENCE_TAG.findall(region):
            attrs = xml_attrs(inside)
            if attrs.get("type") != "subscribe":
                continue
            sender = attrs.get("from", "").split("/")[0]
            if sender not in self.wanted:
                continue
            out.append(f"<presence to='{sender}' type='subscribed'/>")
            if sender not in self.asked:
                self.asked.add(sender)
                out.append(f"<presence to='{sender}' type='subscribe'/>")
        if out:
            conn.write("".join(out).encode())


async def ensure_ring(args: argparse.Namespace) -> int:
    """Mutual subscriptions along the ring; the number of pairs that had to be made."""
    setup = argparse.Namespace(**{**vars(args), "resource": "setup"})
    n, k = args.users, args.contacts
    jid = [f"{username(args, i)}@{args.domain}" for i in range(n)]
    want = [{jid[c] for c in ring_contacts(i, n, k)} for i in range(n)]
    conns, _ = await login_many(setup, range(n), presence=False)
    try:
        async def missing_of(i: int, attempt: int) -> set[str]:
            states = await roster_states(conns[i], f"r{attempt}")
            return {j for j in want[i] if states.get(j) != "both"}

        missing = await run_bounded((missing_of(i, 0) for i in range(n)), args.concurrency)
        for result in missing:
            if isinstance(result, BaseException):
                raise result
        number = {j: i for i, j in enumerate(jid)}
        pairs = {tuple(sorted((i, number[j]))) for i in range(n) for j in missing[i]}
        if not pairs:
            return 0
        events = [asyncio.Event() for _ in range(n)]
        subscribers = [Subscriber(conn, want[i], missing[i], events[i])
                       for i, conn in enumerate(conns)]
        for conn, sub in zip(conns, subscribers, strict=True):
            conn.start_tag_counting(sub.on_region)
            conn.write(b"<presence/>")
        for low, high in sorted(pairs):
            subscribers[low].ask([jid[high]])
            subscribers[high].ask([jid[low]])
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)),
                                   args.setup_timeout)
        except TimeoutError:
            left = sum(len(sub.missing) for sub in subscribers)
            raise HandshakeError(f"{left} ring subscriptions are still not mutual "
                                 f"{args.setup_timeout:g} s after the set-up began") from None
        # Check on fresh connections (the set-up ones count tags now).
        checks, _ = await login_many(setup_check(setup), range(n), presence=False)
        try:
            left = 0
            for i, conn in enumerate(checks):
                states = await roster_states(conn, "check")
                left += sum(1 for j in want[i] if states.get(j) != "both")
        finally:
            close_all(checks)
        if left:
            raise HandshakeError(f"{left} ring subscriptions are not mutual after the set-up")
        return len(pairs)
    finally:
        close_all(conns)
        await asyncio.sleep(1.0)  # let the server end the set-up sessions


def setup_check(setup: argparse.Namespace) -> argparse.Namespace:
    """The set-up arguments with resource ``check``."""
    return argparse.Namespace(**{**vars(setup), "resource": "check"})


class StormUser:
    """One user in the storm: which contacts it has seen available, and when."""

    def __init__(self, run: StormRun, index: int, contacts: set[str], own: str):
        self.run = run
        self.index = index
        self.waiting = set(contacts)
        self.own = own
        self.present_at = 0  # perf_counter_ns when its initial presence went out
        self.done_at = 0
        self.presences = 0

    def on_region(self, conn: BenchConnection, region: bytes) -> None:
        """Count presence stanzas; note contacts seen available."""
        if b"<presence" not in region:
            return
        tags = PRESENCE_TAG.findall(region)
        self.presences += len(tags)
        self.run.presences += len(tags)
        if not self.waiting:
            return
        for inside in tags:
            attrs = xml_attrs(inside)
            if "type" in attrs:
                continue
            sender = attrs.get("from", "").split("/")[0]
            if sender in self.waiting:
                self.waiting.discard(sender)
                if not self.waiting:
                    self.done_at = time.perf_counter_ns()
                    self.run.user_done()


class StormRun:
    """Shared state of the storm."""

    def __init__(self, users: int):
        self.users = users
        self.presences = 0
        self.done = 0
        self.all_done = asyncio.Event()

    def user_done(self) -> None:
        """One more user has seen all its contacts."""
        self.done += 1
        if self.done == self.users:
            self.all_done.set()


async def workload_storm(args: argparse.Namespace) -> dict[str, Any]:
    """N users × K mutual contacts log in at once and send initial presence."""
    n, k = args.users, args.contacts
    if k % 2 or not 0 < k < n:
        raise HandshakeError(f"storm: --contacts must be even and between 2 and {n - 1}")
    meter = Meter(args.server_pid)
    made = await ensure_ring(args)
    setup_seconds = meter.figures()["seconds"]
    run = StormRun(n)
    jid = [f"{username(args, i)}@{args.domain}" for i in range(n)]
    users = [StormUser(run, i, {jid[c] for c in ring_contacts(i, n, k)}, jid[i])
             for i in range(n)]
    conns: list[BenchConnection | None] = [None] * n
    login_ns: list[int] = []
    logged_in = 0
    logins_done = 0.0

    async def one(index: int) -> None:
        nonlocal logged_in, logins_done
        started = time.perf_counter_ns()
        conn = await open_connection(args, index)
        conns[index] = conn
        await conn.login(username(args, index), args.password, args.resource, presence=False)
        answer = await conn.iq("roster", b"<iq type='get' id='roster'>"
                               b"<query xmlns='jabber:iq:roster'/></iq>")
        if b"type='error'" in answer[:200] or b'type="error"' in answer[:200]:
            raise HandshakeError(f"roster get refused: {answer[:200]!r}")
        user = users[index]
        conn.start_tag_counting(user.on_region)
        user.present_at = time.perf_counter_ns()
        conn.write(b"<presence/>")
        login_ns.append(user.present_at - started)
        logged_in += 1
        if logged_in == n:
            logins_done = time.monotonic()

    storm = Meter(args.server_pid)
    started = time.monotonic()
    try:
        results = await run_bounded((one(i) for i in range(n)), args.concurrency)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        try:
            await asyncio.wait_for(run.all_done.wait(), args.settle_timeout)
        except TimeoutError:
            missing = sum(len(u.waiting) for u in users)
            raise HandshakeError(
                f"storm: {n - run.done} of {n} users had not seen all their contacts "
                f"{args.settle_timeout:g} s after the last login ({missing} presences missing)"
            ) from None
        settled = storm.figures()
        seconds = settled["seconds"]
        presences_at_settle = run.presences
        await asyncio.sleep(args.drain)
        login_seconds = logins_done - started
        per_user = [u.done_at - u.present_at for u in users]
        user_p = percentiles(per_user)
        login_p = percentiles(login_ns)
        return {
            "users": n,
            "contacts_per_user": k,
            "logins_per_s": round(n / login_seconds, 1) if login_seconds else None,
            "login_seconds": round(login_seconds, 3),
            "login_p50_ms": login_p["p50_ms"],
            "login_p99_ms": login_p["p99_ms"],
            "presence_per_s": round(presences_at_settle / seconds, 1),
            "presence_stanzas": presences_at_settle,
            "presence_stanzas_after_drain": run.presences,
            "settle_seconds": seconds,  # storm start until every user has seen all contacts
            "user_settle_p50_ms": user_p["p50_ms"],
            "user_settle_p99_ms": user_p["p99_ms"],
            **settled,
            "subscriptions_made": made,
            "setup_seconds": setup_seconds,
            **problems([c for c in conns if c is not None]),
        }
    finally:
        close_all(c for c in conns if c is not None)


def add_storm_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``storm`` sub-command's options."""
    storm = sub.add_parser("storm", parents=parents, help="presence storm after a restart")
    storm.add_argument("--users", type=int, default=200, help="accounts PREFIX0..PREFIX{N-1}")
    storm.add_argument("--contacts", type=int, default=50,
                       help="mutual contacts per user (even; a ring of ±K/2 neighbours)")
    storm.add_argument("--settle-timeout", type=float, default=120.0,
                       help="fail when not every user has seen all contacts by then")
    storm.add_argument("--setup-timeout", type=float, default=900.0,
                       help="seconds allowed for making the ring's subscriptions (once per "
                       "server; Prosody needs minutes for 200 x 50)")
    storm.add_argument("--drain", type=float, default=1.0,
                       help="seconds to let late presence arrive (not measured)")
