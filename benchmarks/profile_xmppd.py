"""Profile xmppd under the chat and muc workloads with py-spy; print the hot paths.

    /tmp/venv/bin/pip install py-spy
    python benchmarks/profile_xmppd.py                 # chat and muc, 10 s each
    python benchmarks/profile_xmppd.py --workloads muc --seconds 5 --keep

For each workload a fresh xmppd (pinned to ``--server-cpu``) gets the load
from ``loadgen.py`` while ``py-spy record`` samples it (pinned with the
generator). The collapsed stacks are summed per function: *self* is the share
of samples in which the function was running, *inclusive* the share in which
it was on the stack (reactor thread only: py-spy leaves out idle samples, so
the shares are of the time the server was busy); *areas* attribute each
sample to the part of the server its innermost known frame belongs to.
Output is markdown for ``benchmarks/README.md``; ``--keep`` leaves the raw
stacks (flamegraph input) in the temporary folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from servers import BENCH_DIR, XmppdServer, pinned

LOADGEN = BENCH_DIR / "loadgen.py"
FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::\d+)?\)$")

# Area of the server -> substrings of a frame ("function (path)") that belong to it.
# A sample counts for the area of its innermost matching frame, so areas add up to 100%.
AREAS = {
    "JID parsing / stringprep": ("jid.py", "stringprep", "idna.py"),
    "serialisation (domish toXml)": ("toXml", "_ListSerializer", "escapeToXml"),
    "socket writes (Twisted transport)": ("internet/abstract.py", "writeSomeData",
                                          "epollreactor.py", "untilConcludes"),
    "stream output (send_stanza, XmlStream.send)": ("C2SStream.send_stanza", "XmlStream.send",
                                                    "ClientSession.send"),
    "logging (twisted.logger)": ("twisted/logger/", "xmppd/logs.py"),
    "wokkel XmlPipe / xish event dispatch": ("wokkel/generic.py", "xish/utility.py",
                                             "wokkel/component.py"),
    "router": ("xmppd/router.py",),
    "MUC room / service": ("xmppd/muc/",),
    "session manager": ("xmppd/sm/",),
    "c2s session checks (ClientSession.receive)": ("ClientSession.receive",),
    "XML parsing (expat callbacks, domish elements)": ("xmlparser.py", "domish.py",
                                                       "C2SStream.dataReceived"),
}


def area_of(frames: list[str]) -> str:
    """The area of the innermost frame that belongs to one."""
    for frame in reversed(frames):
        for area, needles in AREAS.items():
            if any(n in frame for n in needles):
                return area
    return "other (reactor loop, ...)"


def frame_key(frame: str) -> str:
    """``function (file)`` without the line number."""
    found = FRAME.match(frame)
    if not found:
        return frame
    path = found.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{found.group('name')} ({path})"


def summarise(raw: Path, top: int) -> str:
    """Markdown: top self and inclusive functions and the areas, in % of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    pool = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        if "Thread._bootstrap" in stack:  # adbapi / threadpool workers, mostly waiting
            pool += samples
            continue
        total += samples
        frames = [frame_key(f) for f in stack.split(";")]
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
        areas[area_of(frames)] += samples
    if not total:
        return "(no samples)"

    def pct(n: int) -> str:
        return f"{100 * n / total:.1f}%"

    out = [f"{total} samples of the reactor thread ({pool} of idle thread-pool threads "
           "left out).", "", "| self | function |", "|---|---|"]
    out += [f"| {pct(n)} | `{name}` |" for name, n in own.most_common(top)]
    out += ["", "| inclusive | function |", "|---|---|"]
    skip = ("twistd.py", "app.py", "base.py", "_twistd_unix.py", "run_xmppd.py",
            "log.py", "context.py", "epollreactor.py", "posixbase.py", "tcp.py) Connection.doRead",
            "tcp.py) Connection._dataReceived")
    shown = [(name, n) for name, n in inclusive.most_common()
             if not any(s in name for s in skip)][:top]
    out += [f"| {pct(n)} | `{name}` |" for name, n in shown]
    out += ["", "| area (innermost frame) | self share |", "|---|---|"]
    out += [f"| {area} | {pct(n)} |" for area, n in areas.most_common()]
    return "\n".join(out)


def profile(args: argparse.Namespace, workload: str, extra: list[str], workdir: Path) -> str:
    """One workload against a fresh xmppd under py-spy; the markdown summary."""
    server = XmppdServer(workdir, args.server_cpu, args.python)
    raw = workdir / f"{workload}.raw"
    server.start()
    try:
        base = [args.python, str(LOADGEN)]
        target = [*server.loadgen_args(), "--cpu", str(args.loadgen_cpu),
                  "--server-pid", str(server.pid)]
        subprocess.run([*base, "register", *target, "--count", str(args.accounts)],
                       check=True, capture_output=True, timeout=600)
        timed = ["--duration", str(args.seconds + 4), "--warmup", "1"]
        load = subprocess.Popen([*base, workload, *target, *timed, *extra],
                                stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(args.setup + 2)
            spy, _ = pinned([args.py_spy, "record", "--pid", str(server.pid),
                             "--rate", str(args.rate), "--duration", str(int(args.seconds)),
                             "--format", "raw", "--output", str(raw)], args.loadgen_cpu)
            subprocess.run(spy, check=True, capture_output=True, timeout=args.seconds + 60)
            figures, _ = load.communicate(timeout=600)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
    finally:
        server.stop()
    return f"Load: `{figures.strip()}`\n\n" + summarise(raw, args.top)


def main(argv: list[str] | None = None) -> int:
    """Profile the requested workloads and print markdown."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="chat,muc")
    ap.add_argument("--seconds", type=float, default=10.0, help="sampled seconds")
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples/s")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--loadgen-cpu", type=int, default=1)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or
                    str(Path(sys.executable).with_name("py-spy")))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    if not Path(args.py_spy).exists() and not shutil.which(args.py_spy):
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    workloads = {
        "chat": (["--pairs", "50", "--window", "20"], 100, 2.0),
        "muc": (["--rooms", "1", "--occupants", "50", "--senders", "5", "--window", "10"],
                50, 2.0),
    }
    base = Path(tempfile.mkdtemp(prefix="xmppd-profile-"))
    try:
        for name in args.workloads.split(","):
            extra, args.accounts, args.setup = workloads[name]
            print(f"### {name}\n")
            print(profile(args, name, extra, base / name))
            print()
    except KeyboardInterrupt:
        return 130
    finally:
        if args.keep:
            print(f"raw stacks kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
