"""Command line: ``python -m xmppd.testing.scansion --host H --port P script.scs ...``.

Prints ``PASS name`` or ``FAIL name: reason`` for each script, then
``N passed, M failed``; the exit status is 1 if any script failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from twisted.internet import defer

from xmppd.testing.scansion.runner import (
    DEFAULT_QUIET_PERIOD,
    DEFAULT_TIMEOUT,
    ScriptResult,
    run_script,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m xmppd.testing.scansion",
        description="Run scansion scenario scripts against an XMPP server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5222, help="c2s port (default 5222)")
    parser.add_argument(
        "--strict-order",
        action="store_true",
        help=(
            "fail on any received stanza that a receives step passes over, or that no "
            "step consumed by a client's disconnects step or the end of the script"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds a step may wait (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--quiet-period",
        type=float,
        default=DEFAULT_QUIET_PERIOD,
        help=f"seconds of silence for 'receives: nothing' (default {DEFAULT_QUIET_PERIOD:g})",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print every step and passed-over stanza"
    )
    parser.add_argument("scripts", nargs="+", metavar="script.scs")
    return parser


def format_result(result: ScriptResult, verbose: bool = False) -> str:
    """The report of one script: ``PASS name`` or ``FAIL name: reason``."""
    lines = list(result.log) if verbose else []
    if result.passed:
        lines.append(f"PASS {result.name}")
        if result.passed_over and not verbose:
            count = len(result.passed_over)
            lines.append(f"    ({count} stanza(s) passed over; --verbose shows them)")
    else:
        lines.append(f"FAIL {result.name}: {result.failure_message}")
    return "\n".join(lines)


async def run_all(
    paths: Sequence[str], args: argparse.Namespace, out: TextIO
) -> list[ScriptResult]:
    """Run the scripts one after the other, printing each result."""
    results = []
    for path in paths:
        result = await run_script(
            path,
            args.host,
            args.port,
            timeout=args.timeout,
            strict_order=args.strict_order,
            quiet_period=args.quiet_period,
        )
        print(format_result(result, args.verbose), file=out, flush=True)
        results.append(result)
    failed = sum(1 for result in results if not result.passed)
    print(f"{len(results) - failed} passed, {failed} failed", file=out, flush=True)
    return results


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status (0 all passed, 1 otherwise).

    Starts and stops the global reactor, so call it once per process.
    """
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    from twisted.internet import reactor

    outcome: dict[str, int] = {"status": 1}

    def finished(results: object) -> None:
        if isinstance(results, list):
            outcome["status"] = 0 if all(r.passed for r in results) else 1
        else:
            print(f"runner error: {results}", file=out)
        reactor.stop()

    def start() -> None:
        defer.Deferred.fromCoroutine(run_all(args.scripts, args, out)).addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run()
    return outcome["status"]


if __name__ == "__main__":
    sys.exit(main())
