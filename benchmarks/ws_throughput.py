"""Chat messages a second over WebSocket (RFC 7395) and over TCP, in the same run.

Starts xmppd (``twistd``, pinned to core 0 like the other benchmarks) on a
copy of xmppd-bench.toml with the HTTP listener (and so ``/xmpp-websocket``)
on, creates two accounts, and for each transport logs a sender and a
receiver in (PLAIN, plain connections from loopback) and has the sender send
``--messages`` chat messages to the receiver, at most ``--window`` of them
unreceived at a time. The figure is messages delivered a second, from the
first sent to the last received; the best and median of ``--rounds`` rounds
are printed, with how busy the clients' core was (near 100%: the figure is
the clients'). The clients (raw bytes over TCP, autobahn over WebSocket; no
XML parsing, a message is counted by its ``<message`` tag) run in this
process, on another core when ``--cpu`` says so. Because the clients can be
the limit, the server's own cost is printed too: its CPU time (from
``/proc``) per message delivered, which compares the transports whatever
the clients manage.

    .venv/bin/python benchmarks/ws_throughput.py [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from twisted.internet import defer, endpoints, protocol, reactor  # noqa: E402

from benchmarks.servers import HTTPXmppdServer  # noqa: E402

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"


class WebSocketServer(HTTPXmppdServer):
    """xmppd with the HTTP listener (and the WebSocket) on a free loopback port."""

    name = "xmppd-ws"


class _Client:
    """Waits for markers in what arrives; counts messages once logged in."""

    def __init__(self) -> None:
        self.buffer = ""
        self.waiting: tuple[str, defer.Deferred] | None = None
        self.counting = False
        self.received = 0
        self.target = 0
        self.window: defer.Deferred | None = None
        self.done: defer.Deferred | None = None

    def arrived(self, text: str) -> None:
        if self.counting:
            self.received += text.count("<message")
            if self.done is not None and self.received >= self.target:
                done, self.done = self.done, None
                done.callback(time.perf_counter())
            return
        self.buffer += text
        if self.waiting is not None and self.waiting[0] in self.buffer:
            marker, d = self.waiting
            self.waiting = None
            self.buffer = self.buffer.split(marker, 1)[1]
            d.callback(None)

    def expect(self, marker: str) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.waiting = (marker, d)
        self.arrived("")
        return d

    @defer.inlineCallbacks
    def login(self, username: str, password: str, resource: str):
        credentials = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        self.open()
        yield self.expect("</stream:features>")
        self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{credentials}</auth>")
        yield self.expect("<success")
        self.open()
        yield self.expect("</stream:features>")
        self.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'>"
                  f"<resource>{resource}</resource></bind></iq>")
        yield self.expect("</iq>")
        self.send("<presence xmlns='jabber:client'/>")
        self.counting = True


class TCPClient(_Client, protocol.Protocol):
    """A client over a TCP stream."""

    def __init__(self) -> None:
        _Client.__init__(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.arrived(data.decode("utf-8", "replace"))

    def send(self, text: str) -> None:
        self.transport.write(text.encode())

    def open(self) -> None:
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream="
                  "'http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


class WSClient(_Client, WebSocketClientProtocol):
    """A client over WebSocket."""

    def __init__(self) -> None:
        _Client.__init__(self)
        WebSocketClientProtocol.__init__(self)
        self.opened: defer.Deferred = defer.Deferred()

    def onOpen(self) -> None:  # noqa: N802
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.arrived(payload.decode("utf-8", "replace"))

    def send(self, text: str) -> None:
        self.sendMessage(text.encode())

    def open(self) -> None:
        self.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")


@defer.inlineCallbacks
def connect(kind: str, server: WebSocketServer):
    """A connected client of the kind ('tcp' or 'ws')."""
    if kind == "tcp":
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.port)
        return (yield endpoints.connectProtocol(endpoint, TCPClient()))
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
                                     protocols=["xmpp"])
    factory.protocol = WSClient
    # The figure is the server's: spare the client checks the server makes anyway.
    factory.setProtocolOptions(utf8validateIncoming=False)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.http_port)
    client = yield endpoint.connect(factory)
    yield client.opened
    return client


@defer.inlineCallbacks
def one_round(kind: str, server: WebSocketServer, messages: int, window: int):
    """Messages a second from a sender to a receiver, both over the transport."""
    sender = yield connect(kind, server)
    receiver = yield connect(kind, server)
    yield sender.login("sender", "bench-pass", kind)
    yield receiver.login("receiver", "bench-pass", kind)
    receiver.target = messages
    receiver.done = defer.Deferred()
    stanza = ("<message xmlns='jabber:client' to='receiver@localhost/" + kind
              + "' type='chat'><body>hello over the benchmark</body></message>")
    start = time.perf_counter()
    server_start = server_cpu(server.pid)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = cpu.ru_utime + cpu.ru_stime
    sent = 0

    def pump() -> None:
        nonlocal sent
        while sent < messages and sent - receiver.received < window:
            sender.send(stanza)
            sent += 1
        if sent < messages:
            reactor.callLater(0, pump)

    pump()
    end = yield receiver.done
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    busy = (cpu.ru_utime + cpu.ru_stime - cpu_start) / (end - start)
    per_message = (server_cpu(server.pid) - server_start) / messages * 1e6
    for client in (sender, receiver):
        client.transport.loseConnection()
    return messages / (end - start), busy, per_message


def server_cpu(pid: int | None) -> float:
    """Seconds of CPU (user + system) the process has used so far (0 without /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@defer.inlineCallbacks
def run(args: argparse.Namespace, server: WebSocketServer):
    results: dict[str, list[tuple[float, float, float]]] = {"tcp": [], "ws": []}
    for _ in range(args.rounds):
        for kind in ("tcp", "ws"):
            rate = yield one_round(kind, server, args.messages, args.window)
            results[kind].append(rate)
    return results


def main() -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=200, help="messages in flight at most")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=1, help="core of this client (-1: any)")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        server = WebSocketServer(workdir)
        server.start()
        try:
            for name in ("sender", "receiver"):
                subprocess.run([sys.executable, "-m", "xmppd.cli", "-c",
                                str(workdir / "xmppd-bench.toml"), "adduser", name],
                               input=b"bench-pass\n", check=True, env=server.environment(),
                               stdout=subprocess.DEVNULL)
            outcome: list = []
            d = run(args, server)
            d.addBoth(outcome.append)
            d.addBoth(lambda _: reactor.stop())
            reactor.run()
        finally:
            server.stop()
    if not outcome or not isinstance(outcome[0], dict):
        print(f"failed: {outcome[0] if outcome else 'interrupted'}")
        return 1
    results = outcome[0]
    print(f"{args.messages} chat messages, one sender to one receiver, window {args.window}, "
          f"{args.rounds} rounds:")
    for kind, label in (("tcp", "TCP      "), ("ws", "WebSocket")):
        rates = [rate for rate, _, _ in results[kind]]
        client = max(busy for _, busy, _ in results[kind])
        cost = statistics.median(per for _, _, per in results[kind])
        print(f"  {label} best {max(rates):8.0f} msg/s   median "
              f"{statistics.median(rates):8.0f} msg/s   server CPU {cost:5.1f} µs/message "
              f"(median)   (the clients' core busy at most {client:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
