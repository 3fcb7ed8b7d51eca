"""What stream management (XEP-0198) costs: memory per idle session and CPU per acked message.

    .venv/bin/python benchmarks/sm_costs.py             # about 3 minutes
    .venv/bin/python benchmarks/sm_costs.py --clients 2000 --repeat 2

Runs, against xmppd (as shipped) and Prosody 0.12 (with ``mod_smacks`` for
the stream management runs), interleaved, each on a freshly started server
pinned to ``--server-cpu``:

* ``idle``: N clients log in and stay silent; KiB of server memory per
  connection;
* ``idle --sm``: the same with stream management enabled (resumable), and
  each session holding ``--unacked`` (20) messages its client never
  acknowledges;
* ``chat`` and ``chat --sm``: the chat workload, the clients answering the
  server's ack requests; messages/s and the server's CPU time per
  delivered message (µs).

xmppd as shipped archives every message (the idle+SM run's messages too);
``--servers xmppd-no-mam`` shows stream management's share alone.

Prosody is skipped when it is not installed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from compare import Driver, Job, Params, machine, raise_file_limit
from servers import ProsodyServer, ServerError, XmppdServer


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--unacked", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per figure (the best is kept)")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--loadgen-cpu", type=int, default=1)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--job-timeout", type=float, default=900.0)
    ap.add_argument("--servers", default="xmppd,prosody",
                    help="xmppd, xmppd-no-mam (archiving off: the SM share alone), prosody")
    return ap


def cpu_per_message(result: dict) -> str:
    """Server CPU µs per delivered message, or '-'."""
    rate, cpu = result.get("delivered_per_s"), result.get("server_cpu")
    return f"{cpu / rate * 1e6:.0f}" if rate and cpu else "-"


def main(argv: list[str] | None = None) -> int:
    """Run the idle and chat jobs with and without stream management; print a table."""
    args = parser().parse_args(argv)
    raise_file_limit()
    base = Path(tempfile.mkdtemp(prefix="xmppd-sm-bench-"))
    servers = []
    for name in args.servers.split(","):
        if name == "xmppd":
            servers.append(XmppdServer(base / name, args.server_cpu, args.python))
        elif name == "xmppd-no-mam":
            servers.append(XmppdServer(base / name, args.server_cpu, args.python,
                                       disabled_modules=("mam",), name=name))
        elif name == "prosody" and ProsodyServer.available():
            servers.append(ProsodyServer(base / name, args.server_cpu,
                                         extra_modules=("smacks",), name=name))
        elif name == "prosody":
            print("[sm_costs] prosody is not installed: skipped", file=sys.stderr)
        else:
            raise SystemExit(f"unknown server {name!r}")
    driver = Driver(args, servers)
    p = Params(chat_pairs=args.pairs, duration=args.duration)
    timed = ["--duration", str(p.duration), "--warmup", str(p.warmup)]
    chat = ["--pairs", str(p.chat_pairs), "--window", str(p.chat_window), *timed]
    jobs = [
        Job("idle", "idle", ["--clients", str(args.clients)]),
        Job("idle+sm", "idle", ["--clients", str(args.clients), "--sm",
                                "--unacked", str(args.unacked)]),
        Job("chat", "chat", chat),
        Job("chat+sm", "chat", [*chat, "--sm"]),
    ]
    try:
        table = driver.measure(jobs, max(args.clients, 2 * args.pairs), base)
    except ServerError as e:
        print(f"[sm_costs] {e}", file=sys.stderr)
        return 1
    names = [s.name for s in servers]
    print(f"Measured {machine()}; {args.clients} idle clients, {args.unacked} unacknowledged "
          f"stanzas each with SM; chat {args.pairs} pairs, {args.duration} s; "
          f"best of {args.repeat}.\n")
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    rows = [
        ("idle KiB per connection", "idle", lambda r: r.get("kib_per_connection")),
        (f"idle KiB per connection, SM + {args.unacked} unacked", "idle+sm",
         lambda r: r.get("kib_per_connection")),
        ("chat messages/s", "chat", lambda r: r.get("delivered_per_s")),
        ("chat messages/s, SM (acks answered)", "chat+sm", lambda r: r.get("delivered_per_s")),
        ("server CPU µs per message", "chat", cpu_per_message),
        ("server CPU µs per message, SM", "chat+sm", cpu_per_message),
    ]
    for label, job, value in rows:
        cells = [str(value(table.get((job, name), {})) or "-") for name in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    failed = [(job, s, r["error"]) for (job, s), r in table.items() if "error" in r]
    for job, s, error in failed:
        print(f"\n* {s} {job} failed: {error[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
