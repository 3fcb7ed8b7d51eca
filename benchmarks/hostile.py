"""Run the hostile-input battery against a live xmppd for a bounded time.

    python benchmarks/hostile.py --host 127.0.0.1 --port 5222 --domain localhost \\
        --seconds 60 [--user NAME --password SECRET] [--pid SERVER_PID]

Round after round until ``--seconds`` are used up, it sends every attack of
:mod:`xmppd.testing.hostile` (oversized and never-ending input, deep nesting, too
many attributes or elements, restricted XML, invalid characters, malformed
XML), random mutations of a client stream, a connection flood and password
guessing (against a made-up account name), each on its own connection. A
whitespace flood (rate limit) and a silent connection (negotiation timeout)
run alongside when the time allows.

With ``--user``/``--password`` (an existing account; the script never
creates one) two well-behaved sessions of that account exchange a message
every ``--interval`` seconds the whole time; every message must arrive.
Run the script from a host whose address is not needed for logins for a
while: the guessing attack makes the server back off that address.

It prints the inputs tried, the errors received (stream error conditions
and SASL failures), answers that were not the expected error, server
crashes (the server stops accepting, or ``--pid`` disappears: must be 0),
messages lost by the well-behaved client (must be 0) and the server's
memory (VmRSS from /proc/PID/status) before and after. The exit status is
0 only when there were no crashes, no lost messages and no unexpected
answers.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.words.xish import domish

import xmppd  # noqa: F401  (compat shim first)
from xmppd.testing import hostile
from xmppd.testing.scansion.client import ScansionClient
from xmppd.testing.scansion.parser import ClientAccount

TIMEOUT = 15.0


def rss_kib(pid: int | None) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in KiB, from /proc; None if unknown."""
    if pid is None:
        return None
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0])
    except (OSError, ValueError):
        return None
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def alive(pid: int | None) -> bool:
    """True unless ``pid`` is given and no longer exists."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Report:
    """What the run saw."""

    def __init__(self) -> None:
        self.inputs = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []
        self.crashes = 0
        self.sent = 0
        self.received = 0
        self.notes: list[str] = []

    def record(self, result: hostile.AttackResult, expected: bool = True) -> None:
        """Count one attack's answer."""
        self.inputs += 1
        if result.condition:
            self.errors[result.condition] += 1
        for failure in result.sasl_failures:
            self.errors[f"sasl:{failure}"] += 1
        if expected and not result.ok:
            self.unexpected.append(
                f"{result.name}: got {result.condition}, expected {' or '.join(result.expected)}"
            )


class Pair:
    """Two sessions of one account; ``a`` sends to ``b`` and counts arrivals."""

    def __init__(self, reactor: Any, host: str, port: int, user: str, password: str, domain: str):
        self.reactor = reactor
        self.host, self.port = host, port
        account = f"{user}@{domain}"
        self.a = ScansionClient(ClientAccount("a", account, password, "hostile-a"), reactor)
        self.b = ScansionClient(ClientAccount("b", account, password, "hostile-b"), reactor)
        self.expected: set[str] = set()
        self.sent = 0
        self.received = 0

    @defer.inlineCallbacks
    def connect(self):
        """Log both sessions in; they answer XEP-0199 pings."""
        for client in (self.a, self.b):
            yield client.connect(self.host, self.port, timeout=TIMEOUT)
            client.answer_pings()

    def send(self) -> None:
        """Send one numbered message a -> b."""
        self.drain()
        if not self.a.connected:
            return
        self.sent += 1
        message = domish.Element((None, "message"))
        message["to"] = str(self.b.full_jid)
        message["type"] = "chat"
        message["id"] = f"hostile-{self.sent}"
        message.addElement("body", content=f"well-behaved message {self.sent}")
        self.expected.add(message["id"])
        self.a.send(message)

    def drain(self) -> None:
        """Count the messages b has received."""
        while self.b.queue:
            stanza = self.b.queue.popleft()
            if stanza.name == "message" and stanza.getAttribute("id") in self.expected:
                self.expected.discard(stanza["id"])
                self.received += 1

    @defer.inlineCallbacks
    def settle(self, timeout: float):
        """Wait (up to ``timeout``) for the messages still on their way."""
        deadline = self.reactor.seconds() + timeout
        self.drain()
        while self.expected and self.reactor.seconds() < deadline and self.b.connected:
            yield self.b.wait_for_stanza(deadline - self.reactor.seconds())
            self.drain()

    @defer.inlineCallbacks
    def close(self):
        """Disconnect both sessions."""
        for client in (self.a, self.b):
            yield client.disconnect()


@defer.inlineCallbacks
def server_accepts(reactor: Any, host: str, port: int, domain: str):
    """True if a new connection gets a stream header and features."""
    try:
        client = yield hostile.connect(reactor, host, port, TIMEOUT)
    except Exception:
        return False
    client.write(hostile.stream_header(domain))
    yield client.wait_until(reactor, lambda: bool(client.elements), TIMEOUT)
    ok = client.header_received and bool(client.elements) and client.elements[0].name == "features"
    client.abort()
    yield client.closed
    return ok


@defer.inlineCallbacks
def run(reactor: Any, options: argparse.Namespace):
    """The whole run; fires with the exit status."""
    host, port, domain = options.host, options.port, options.domain
    report = Report()
    rng = random.Random(options.seed)
    memory_before = rss_kib(options.pid)
    started = time.monotonic()

    def time_left() -> float:
        return options.seconds - (time.monotonic() - started)

    if not (yield server_accepts(reactor, host, port, domain)):
        print(f"xmppd at {host}:{port} does not answer with a stream header", file=sys.stderr)
        return 2

    pair = None
    ticker = None
    if options.user:
        pair = Pair(reactor, host, port, options.user, options.password or "", domain)
        try:
            yield pair.connect()
        except Exception as e:
            print(f"cannot log in as {options.user}: {e}", file=sys.stderr)
            return 2
        ticker = task.LoopingCall(pair.send)
        ticker.clock = reactor
        ticker.start(options.interval)

    background = []
    if time_left() > 40:
        background.append(hostile.stall(reactor, host, port, domain, timeout=time_left() - 5))
    if time_left() > 20:
        background.append(
            hostile.whitespace_flood(reactor, host, port, domain, size=options.flood_bytes,
                                     timeout=max(5.0, time_left() - 5))
        )

    seed_stream = hostile.stream_header(domain) + (
        f"<message to='nobody@{domain}'><body>x</body></message><presence/>".encode()
    )
    rounds = 0
    while time_left() > 0:
        rounds += 1
        for attack in hostile.ATTACKS:
            if time_left() <= 0:
                break
            result = yield hostile.run_attack(reactor, host, port, domain, attack, timeout=TIMEOUT)
            report.record(result)
        for i, data in enumerate(hostile.mutations(seed_stream, options.mutations, rng)):
            if time_left() <= 0:
                break
            attack = hostile.Attack(f"mutation {rounds}.{i}", (), lambda d=data: iter([d]), False)
            result = yield hostile.run_attack(reactor, host, port, domain, attack, timeout=2.0)
            report.record(result, expected=False)
            if result.condition == "internal-server-error":
                report.unexpected.append(f"{attack.name}: internal-server-error")
        if time_left() > 0:
            result = yield hostile.flood_connections(reactor, host, port, domain, limit=200)
            report.record(result)
        if time_left() > 0 and rounds == 1:
            result = yield hostile.guess_passwords(
                reactor, host, port, domain, f"nobody-{rng.randrange(10**6)}", attempts=12
            )
            report.record(result)
        if not alive(options.pid) or not (yield server_accepts(reactor, host, port, domain)):
            report.crashes += 1
            report.notes.append(f"round {rounds}: the server stopped accepting connections")
            break

    for d in background:
        result = yield d
        report.record(result)

    if pair is not None:
        ticker.stop()
        yield pair.settle(TIMEOUT)
        report.sent, report.received = pair.sent, pair.received
        if not (pair.a.connected and pair.b.connected):
            report.notes.append("a well-behaved session was disconnected")
        yield pair.close()
    if not alive(options.pid):
        report.crashes = max(report.crashes, 1)
    memory_after = rss_kib(options.pid)

    print(f"rounds: {rounds} in {time.monotonic() - started:.1f} s")
    print(f"inputs tried: {report.inputs}")
    errors = ", ".join(f"{name} {count}" for name, count in sorted(report.errors.items()))
    print(f"errors received: {sum(report.errors.values())} ({errors})")
    print(f"unexpected answers: {len(report.unexpected)}")
    for line in report.unexpected[:20]:
        print(f"  {line}")
    print(f"server crashes: {report.crashes}")
    if pair is not None:
        lost = report.sent - report.received
        print(f"messages lost by the well-behaved client: {lost} "
              f"(sent {report.sent}, received {report.received})")
    else:
        lost = 0
        print("messages lost by the well-behaved client: not measured (no --user given)")
    if memory_before and memory_after:
        print(f"server memory (RSS): before {memory_before[0]} KiB, after {memory_after[0]} KiB, "
              f"peak {memory_after[1]} KiB")
    else:
        print("server memory: not measured (give --pid of a local server)")
    for note in report.notes:
        print(f"note: {note}")
    return 0 if not report.crashes and not lost and not report.unexpected else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5222)
    parser.add_argument("--domain", default="localhost", help="the server's XMPP domain")
    parser.add_argument("--seconds", type=float, default=30.0, help="time budget")
    parser.add_argument("--user", help="an existing account for the well-behaved pair")
    parser.add_argument("--password", help="its password")
    parser.add_argument("--pid", type=int, help="the server's process id (memory, liveness)")
    parser.add_argument("--interval", type=float, default=0.2,
                        help="seconds between the well-behaved messages")
    parser.add_argument("--mutations", type=int, default=30, help="mutated streams per round")
    parser.add_argument("--flood-bytes", type=int, default=512 * 1024,
                        help="size of the whitespace flood")
    parser.add_argument("--seed", type=int, default=None, help="random seed for mutations")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    options = parse_args(argv)

    def work(reactor: Any) -> defer.Deferred:
        d = run(reactor, options)

        def finish(status: int) -> None:
            if status:
                raise SystemExit(status)

        return d.addCallback(finish)

    task.react(work)


if __name__ == "__main__":
    main()
