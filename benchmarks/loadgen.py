"""XMPP load generator: one workload per run, one JSON line of figures.

Workloads (``python benchmarks/loadgen.py WORKLOAD --help`` for parameters):

* ``register`` — create the accounts ``PREFIX0 .. PREFIX{N-1}`` by in-band
  registration (XEP-0077); existing ones are left alone.
* ``login`` — N clients connect, authenticate (``--sasl``) and bind, at most
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
* ``storm`` — N users each in mutual subscription with K others (a ring) log
  in at once and send initial presence: logins/s, presence stanzas/s, the
  time until every user has seen all its contacts (see :mod:`loadgen_storm`).

Every workload takes ``--tls`` (STARTTLS) and ``--sasl`` (``plain``,
``scram-sha-256``, ``scram-sha-1``; SCRAM salted passwords are cached per
account, salt and iteration count, across processes with ``--scram-cache``)
and ``--source-addresses K`` (connections from 127.0.0.2..127.0.0.K+1).

The generator is built to cost far less per stanza than a server: stanzas go
out as pre-serialised bytes and come in counted by a byte scan (see
:mod:`benchclient`). Latency is measured from a ``time.monotonic_ns()``
timestamp carried in the message body. ``--cpu`` pins the generator to one
core (the comparison driver pins the server to another).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import benchscram
from benchclient import BenchConnection, HandshakeError
from loadcore import (
    Meter,
    Run,
    Sender,
    close_all,
    login_many,
    open_connection,
    percentiles,
    pin_to_cpu,
    problems,
    raise_file_limit,
    rss_kib,
    run_bounded,
    timed_run,
    username,
)
from loadgen_pep import workload_pep
from loadgen_storm import add_storm_parser, workload_storm

# -- workloads -------------------------------------------------------------------


async def workload_register(args: argparse.Namespace) -> dict[str, Any]:
    """Create accounts by in-band registration (existing ones count as present)."""

    async def one(index: int) -> bool:
        conn = await open_connection(args, index)
        try:
            return await conn.register(username(args, index), args.password)
        finally:
            conn.close()

    meter = Meter(args.server_pid)
    results = await run_bounded((one(i) for i in range(args.start, args.count)), args.concurrency)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    figures = meter.figures()
    primed = 0
    if args.sasl != "plain" and args.scram_cache:
        # One login per account fills the SCRAM cache file: later runs pay no PBKDF2.
        conns, _ = await login_many(args, range(args.start, args.count), presence=False)
        primed = len(conns)
        close_all(conns)
        await asyncio.sleep(0.5)
    return {
        "created": sum(1 for r in results if r is True),
        "existing": sum(1 for r in results if r is False),
        "scram_primed": primed,
        **figures,
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
        "loadgen_rss_kib": rss_kib(os.getpid()),  # the generator's own (TLS) state
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
    """R rooms of M occupants; S senders per room (``--join-only``: the joins alone)."""
    rooms = [f"{args.room_prefix}{r}@{args.muc_domain}" for r in range(args.rooms)]
    login_meter = Meter(args.server_pid)
    conns, _ = await login_many(args, range(args.rooms * args.occupants), presence=True)
    login_seconds = login_meter.figures()["seconds"]
    run = Run(args.window, args.rate)
    try:
        meter = Meter(args.server_pid)
        by_room = [
            conns[r * args.occupants : (r + 1) * args.occupants] for r in range(args.rooms)
        ]
        fields = ({} if args.presence_broadcast == "all"
                  else {"muc#roomconfig_presencebroadcast": "moderator"})

        def ignore(conn: BenchConnection, matches: list[tuple[bytes, bytes]]) -> None:
            return None

        async def join(member: BenchConnection, room: str, nick: str) -> None:
            await member.join_room(room, nick)
            # Joined: later occupants' presence is only scanned, not buffered.
            member.start_counting(ignore)

        async def found_room(room: str, members: list[BenchConnection]) -> None:
            owner = members[0]
            await owner.join_room(room, "n0")
            await owner.configure_room(room, fields)
            owner.start_counting(ignore)

        results = await asyncio.gather(
            *(found_room(room, members) for room, members in zip(rooms, by_room, strict=True)),
            return_exceptions=True,
        )
        joins = [
            join(member, room, f"n{j}")
            for room, members in zip(rooms, by_room, strict=True)
            for j, member in enumerate(members)
            if j > 0
        ]
        results += await run_bounded(joins, args.concurrency)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        joined = meter.figures()
        join_figures = {
            "join_seconds": joined["seconds"],  # seconds until all occupants joined
            "joins_per_s": round(len(conns) / joined["seconds"], 1),
            "join_server_cpu": joined.get("server_cpu"),
            "login_seconds": login_seconds,
            "presence_broadcast": args.presence_broadcast,
        }
        if args.join_only:
            await asyncio.sleep(args.drain)
            return {**join_figures, **joined, **problems(conns)}

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
        result.update(join_figures)
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
    "storm": workload_storm,
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
    common.add_argument("--tls", action="store_true",
                        help="STARTTLS on every connection (no certificate verification)")
    common.add_argument("--sasl", default="plain",
                        choices=["plain", "scram-sha-256", "scram-sha-1"])
    common.add_argument("--scram-cache", metavar="FILE",
                        help="keep SCRAM salted passwords in FILE across runs")
    common.add_argument("--source-addresses", type=int, default=0, metavar="K",
                        help="cycle connections over source addresses 127.0.0.2..127.0.0.K+1 "
                        "(more ephemeral ports for tens of thousands of connections)")

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
    muc.add_argument("--join-only", action="store_true",
                     help="measure the joins only (seconds until all occupants joined)")
    muc.add_argument("--presence-broadcast", choices=["moderator", "all"], default="moderator",
                     help="whose presence occupants get: moderators' only (O(M) joins) or "
                     "everyone's (the server default, O(M^2) presence stanzas)")
    pep = sub.add_parser("pep", parents=[common, timed], help="PEP notifications/s")
    pep.add_argument("--contacts", type=int, default=100,
                     help="accounts PREFIX1..PREFIX{contacts}; PREFIX0 is the owner")
    pep.add_argument("--payload", type=int, default=100,
                     help="bytes of each published item's payload element")
    pep.add_argument("--settle", type=float, default=1.0,
                     help="seconds between the contacts' caps presence and the first publish")
    pep.add_argument("--warmup-timeout", type=float, default=30.0,
                     help="fail when a contact has no notification this long after publishing")
    add_storm_parser(sub, [common])
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one workload and print one JSON line; exit 1 if it could not run."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.workload == "pep" and (args.rate or args.contacts < 1):
        cli.error("pep: --contacts must be at least 1, and there is no --rate mode")
    pinned = pin_to_cpu(args.cpu)
    file_limit = raise_file_limit()
    if args.scram_cache:
        benchscram.CACHE = benchscram.ScramCache(args.scram_cache)
    params = {
        k: v
        for k, v in vars(args).items()
        if k not in ("host", "password", "resource", "server_pid", "label", "prefix")
    }
    line: dict[str, Any] = {"workload": args.workload, "server": args.label, "pinned": pinned,
                            "tls": args.tls, "sasl": args.sasl, "file_limit": file_limit}
    try:
        line.update(asyncio.run(WORKLOADS[args.workload](args)))
        code = 0
    except (HandshakeError, OSError) as e:
        line["error"] = f"{type(e).__name__}: {e}"
        code = 1
    if args.sasl != "plain":
        # PBKDF2 is paid once per (account, salt, iterations), not per login.
        line.update(benchscram.CACHE.figures())
        benchscram.CACHE.save()
    line["params"] = params
    print(json.dumps(line), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
