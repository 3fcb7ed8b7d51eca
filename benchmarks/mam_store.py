"""Time XEP-0313 archive queries on a large archive (xmppd.mam.store); print a markdown table.

    .venv/bin/python benchmarks/mam_store.py                 # 100,000 messages, 200 runs
    .venv/bin/python benchmarks/mam_store.py --messages 1000000 --runs 50

Builds a temporary SQLite database with the server's schema and the
archive table, fills one account's archive with ``--messages`` messages
(50 contacts, one second apart) and another archive of the same size, then
runs each query ``--runs`` times through :class:`ArchiveStore` on the
server's database pool (one thread, as in the server) and reports the
median and 99th percentile of the time until the page (with count, index
and complete) is back on the reactor. First it prints what writing
archive rows costs (``--writes`` rows through the ``mam`` module's writer).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmppd.mam.store import INSERT, ArchiveSequence, ArchiveStore, archive_row  # noqa: E402
from xmppd.mam.writer import ArchiveWriter  # noqa: E402
from xmppd.storage.database import Database, migrate_file  # noqa: E402

OWNER = "alice@localhost"


def fill(path: Path, messages: int) -> None:
    """Create the database and both archives synchronously (fast bulk insert)."""
    migrate_file(path)
    connection = sqlite3.connect(str(path))
    connection.execute("INSERT INTO accounts (username, created) VALUES ('alice', 0)")
    sequence = ArchiveSequence()
    owners = ((OWNER, "alice", 0.0), ("room@conference.localhost", None, 0.5))
    connection.executemany(INSERT, (
        archive_row(sequence, owner, stamp=1_000_000.0 + i + offset,
                    with_jid=f"c{i % 50}@localhost/r", direction="in" if i % 2 else "out",
                    stanza=f"<message xmlns='jabber:client' type='chat' id='m{i}'>"
                    f"<body>message {i}</body></message>", account=account)
        for i in range(messages) for owner, account, offset in owners))
    connection.commit()
    connection.close()


@defer.inlineCallbacks
def time_writes(database: Database, rows: int):
    """Print the cost of writing archive rows as the server does (the floor of archiving).

    Rows of a chat between 100 accounts (each message archived twice, for
    the sender and the recipient), written by the ``mam`` module's
    :class:`~xmppd.mam.writer.ArchiveWriter` in 1,000-row transactions on
    the database's thread: CPU time of the whole process per row.
    """
    writer = ArchiveWriter(database, max_batch=1000, gather=0.0)
    for n in range(100):
        yield database.execute("INSERT OR IGNORE INTO accounts (username, created) "
                               "VALUES (?, 0)", f"u{n}")
    began = time.process_time()
    for i in range(rows // 2):
        stanza = (f"<message xmlns='jabber:client' to='u{(i + 1) % 100}@localhost/r' "
                  f"from='u{i % 100}@localhost/r' type='chat' id='m{i}'>"
                  f"<body>message number {i} of the benchmark</body></message>")
        stamp = 2_000_000.0 + i / 1000
        writer.add(f"u{i % 100}@localhost", f"u{i % 100}", f"u{(i + 1) % 100}@localhost/r",
                   "out", stanza, stamp)
        writer.add(f"u{(i + 1) % 100}@localhost", f"u{(i + 1) % 100}",
                   f"u{i % 100}@localhost/r", "in", stanza, stamp)
    yield writer.flush()
    per_row = (time.process_time() - began) / rows * 1e6
    print(f"Writing {rows:,} archive rows (100 accounts, 1,000-row transactions): "
          f"{per_row:.1f} µs of CPU per row, {2 * per_row:.1f} µs per chat message "
          "(two archives).\n")


@defer.inlineCallbacks
def main(reactor, args):
    """Fill, then time each query and print the table."""
    folder = Path(tempfile.mkdtemp(prefix="mam-bench-"))
    path = folder / "bench.sqlite"
    fill(path, args.messages)
    database = Database(path, reactor)
    yield database.open()
    store = ArchiveStore(database)
    middle = 1_000_000.0 + args.messages // 2
    queries = [
        ("last 50 (RSM `<before/>`)", {"reverse": True}),
        ("first 50", {}),
        ("last 50 with one contact (bare JID)", {"with_": "c7@localhost", "reverse": True}),
        ("last 50 since the middle (`start`)", {"start": middle, "reverse": True}),
        ("first 50 of the newest half (`start`)", {"start": middle}),
        ("first 50 of the newest 1% (`start`, a sync)",
         {"start": 1_000_000.0 + args.messages * 0.99}),
        ("last 50 of the oldest 10% (`end`)",
         {"end": 1_000_000.0 + args.messages // 10, "reverse": True}),
    ]
    yield time_writes(database, args.writes)
    print(f"| query ({args.messages:,} messages, {args.runs} runs) | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for label, kwargs in queries:
        times = []
        for _ in range(args.runs):
            began = time.perf_counter()
            page = yield store.query(OWNER, limit=50, **kwargs)
            times.append((time.perf_counter() - began) * 1000)
            assert len(page.items) == 50, label
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"| {label} | {times[len(times) // 2]:.1f} | {p99:.1f} |")
    database.close()
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--writes", type=int, default=100_000,
                        help="archive rows written for the write cost")
    task.react(main, [parser.parse_args()])
