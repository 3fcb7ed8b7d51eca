"""Chat throughput with message archiving (XEP-0313) on and off, xmppd and Prosody; a table.

    .venv/bin/python benchmarks/archive_chat.py              # 3 runs each, about 5 minutes
    .venv/bin/python benchmarks/archive_chat.py --repeat 1 --duration 5   # quicker

Four servers, each with its own accounts, run the ``chat`` workload of
``compare.py`` (P pairs, W messages in flight per client, to the partner's
full JID, every message with a body: both the sender's and the recipient's
archive store it) in turn, interleaved, best of ``--repeat``:

* ``xmppd``: the default configuration of benchmarks/xmppd-bench.toml
  (archiving on, as shipped);
* ``xmppd-no-mam``: the same with ``[modules] disabled = ["mam"]``;
* ``prosody+mam``: Prosody 0.12 with ``mod_mam`` (and ``mod_carbons``, which
  xmppd also has on) on its default storage;
* ``prosody``: Prosody as ``compare.py`` runs it (no archive).

The issue's target: xmppd with archiving keeps at least 0.8 of its
throughput without. Prosody is skipped when it is not installed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from compare import (
    Driver,
    Params,
    interrupted,
    machine,
    noise_table,
    raise_file_limit,
    standard_jobs,
)
from servers import ProsodyServer, Server, ServerError, XmppdServer


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (the best is kept)")
    ap.add_argument("--servers", default="xmppd,xmppd-no-mam,prosody+mam,prosody")
    ap.add_argument("--server-cpu", default="0",
                    help="core(s) for the servers (taskset list, e.g. 0 or 0,1)")
    ap.add_argument("--loadgen-cpu", type=int, default=1)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--job-timeout", type=float, default=900.0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    return ap


def make_servers(args: argparse.Namespace, base: Path) -> list[Server]:
    """The servers asked for (Prosody's only when it is installed)."""
    every = {
        "xmppd": lambda: XmppdServer(base / "xmppd", args.server_cpu, args.python),
        "xmppd-no-mam": lambda: XmppdServer(base / "xmppd-no-mam", args.server_cpu, args.python,
                                            disabled_modules=("mam",), name="xmppd-no-mam"),
        "prosody+mam": lambda: ProsodyServer(base / "prosody-mam", args.server_cpu,
                                             extra_modules=("mam", "carbons"),
                                             name="prosody+mam"),
        "prosody": lambda: ProsodyServer(base / "prosody", args.server_cpu),
    }
    servers = []
    for name in args.servers.split(","):
        if name not in every:
            raise SystemExit(f"unknown server {name!r}; known: {', '.join(every)}")
        if name.startswith("prosody") and not ProsodyServer.available():
            print(f"[archive_chat] prosody is not installed: {name} skipped", file=sys.stderr)
            continue
        servers.append(every[name]())
    return servers


def ratio(table: dict, on: str, off: str) -> str:
    """on/off throughput, or '-' when either is missing."""
    a = table.get(("chat", on), {}).get("delivered_per_s")
    b = table.get(("chat", off), {}).get("delivered_per_s")
    return f"{a / b:.2f}" if a and b else "-"


def main(argv: list[str] | None = None) -> int:
    """Run the four servers' chat workloads and print the table."""
    args = parser().parse_args(argv)
    params = Params(chat_pairs=args.pairs, chat_window=args.window, duration=args.duration)
    raise_file_limit()
    signal.signal(signal.SIGTERM, interrupted)
    base = Path(tempfile.mkdtemp(prefix="xmppd-archive-bench-"))
    servers = make_servers(args, base)
    driver = Driver(args, servers)
    try:
        table = driver.measure(standard_jobs(params, workloads=("chat",)), 2 * args.pairs, base,
                               keep=args.keep)
    except KeyboardInterrupt:
        print("[archive_chat] interrupted", file=sys.stderr)
        return 130
    except ServerError as e:
        print(f"[archive_chat] {e}", file=sys.stderr)
        return 1
    names = [s.name for s in servers]
    print(f"Measured {machine()}; chat, {args.pairs} pairs, window {args.window}, "
          f"{args.duration} s, best of {args.repeat}.\n")
    print("| server | delivered/s | p50 ms | p99 ms | server CPU |")
    print("|---|---|---|---|---|")
    for name in names:
        r = table.get(("chat", name), {})
        print(f"| {name} | {r.get('delivered_per_s', '-')} | {r.get('p50_ms', '-')} | "
              f"{r.get('p99_ms', '-')} | {r.get('server_cpu', '-')} |")
    print(f"\narchiving on / off: xmppd {ratio(table, 'xmppd', 'xmppd-no-mam')}, "
          f"Prosody {ratio(table, 'prosody+mam', 'prosody')}")
    print("\nCPU use during the measured interval (cores):\n")
    print(noise_table(table, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
