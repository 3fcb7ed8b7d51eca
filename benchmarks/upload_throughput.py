"""HTTP file upload (XEP-0363) throughput: PUT and GET of one file, in MB/s.

Starts xmppd (``twistd``, pinned to core 0 like the other benchmarks) on a
copy of xmppd-bench.toml with the HTTP listener and the upload service on,
creates an account, and for each round opens a slot the way the service
does (a row in the database and a PUT authorisation signed with the
service's key: only the HTTP path is measured, not the XMPP slot request),
PUTs the file from memory and GETs it back over one loopback connection
each (Python's http.client, in this process, on another core when
``--cpu`` says so). Prints the best and median MB/s (1 MB = 10^6 bytes) of
``--rounds`` rounds.

    .venv/bin/python benchmarks/upload_throughput.py [--size 10000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import HTTPXmppdServer  # noqa: E402
from xmppd.upload.service import SlotSigner  # noqa: E402
from xmppd.upload.store import new_slot_id  # noqa: E402


class UploadServer(HTTPXmppdServer):
    """xmppd with HTTP on a free loopback port and uploads up to 1 GB."""

    name = "xmppd-upload"

    def write_config(self) -> Path:
        """The bench config with HTTP and the upload service switched on."""
        path = super().write_config()
        text = path.read_text()
        text = text.replace('[upload]\ndomain = ""',
                            '[upload]\ndomain = "upload.localhost"\nmax_file_size = 1000000000\n'
                            'quota = 0\nmax_open_slots = 1000')
        path.write_text(text)
        return path


def open_slot(workdir: Path, size: int) -> tuple[str, str]:
    """A slot for ``bench`` straight in the database; (path, Authorization value)."""
    slot = new_slot_id()
    now = time.time()
    with sqlite3.connect(workdir / "data" / "xmppd.sqlite") as db:
        db.execute("INSERT INTO uploads (id, owner, filename, size, content_type, created, "
                   "slot_expires, uploaded) VALUES (?, 'bench', 'f.bin', ?, "
                   "'application/octet-stream', ?, ?, NULL)", (slot, size, now, now + 300))
    secret = (workdir / "data" / "upload.secret").read_bytes()
    return f"/upload/{slot}/f.bin", SlotSigner(secret).sign(slot, now + 300)


def timed(port: int, method: str, path: str, body: bytes | None,
          headers: dict[str, str]) -> tuple[float, int, bytes]:
    """One request on a fresh connection: (seconds, status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed, response.status, data


def main() -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="bytes of the file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=1, help="core of this client (-1: any)")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    payload = os.urandom(args.size)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        server = UploadServer(workdir)
        server.start()
        # The account (xmppdctl on the same config), so the sweep keeps its slots.
        subprocess.run([sys.executable, "-m", "xmppd.cli", "-c",
                        str(workdir / "xmppd-bench.toml"), "adduser", "bench"],
                       input=b"bench-pass\n", check=True, env=server.environment(),
                       stdout=subprocess.DEVNULL)
        try:
            puts, gets = [], []
            for _ in range(args.rounds):
                path, auth = open_slot(workdir, args.size)
                seconds, status, _ = timed(server.http_port, "PUT", path, payload, {
                    "Authorization": auth, "Content-Type": "application/octet-stream",
                    "Content-Length": str(args.size)})
                if status != 201:
                    raise SystemExit(f"PUT answered {status}")
                puts.append(args.size / seconds / 1e6)
                seconds, status, data = timed(server.http_port, "GET", path, None, {})
                if status != 200 or data != payload:
                    raise SystemExit(f"GET answered {status} ({len(data)} bytes)")
                gets.append(args.size / seconds / 1e6)
        finally:
            server.stop()
    print(f"upload of {args.size / 1e6:g} MB over loopback, {args.rounds} rounds:")
    print(f"  PUT  best {max(puts):7.1f} MB/s   median {statistics.median(puts):7.1f} MB/s")
    print(f"  GET  best {max(gets):7.1f} MB/s   median {statistics.median(gets):7.1f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
