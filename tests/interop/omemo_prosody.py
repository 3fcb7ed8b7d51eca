"""Run the OMEMO pair (omemo_pair.py) against a fresh Prosody, the reference.

    python tests/interop/omemo_prosody.py [--trace] [--keep]

Starts Prosody (``/usr/bin/prosody``, Debian's 0.12) on a free loopback
port with a config written into a temporary folder by
benchmarks/servers.py (``ProsodyServer``, no TLS, with mod_pep added),
creates the accounts alice@localhost and bob@localhost with
``prosodyctl --config FILE register``, runs omemo_pair.py against it with
this Python, stops Prosody and exits with the pair's exit code (its JSON
result is the last line of stdout). --trace passes on to the pair (every
stanza to stderr); --keep leaves the folder (Prosody's data and log).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.servers import ProsodyServer, ServerError  # noqa: E402

PAIR = Path(__file__).resolve().parent / "omemo_pair.py"
PASSWORD = "omemo-pw"


def register(server: ProsodyServer, username: str) -> None:
    """Create an account with prosodyctl (same config, same data folder)."""
    subprocess.run(
        ["prosodyctl", "--config", str(server.workdir / "prosody.cfg.lua"),
         "register", username, "localhost", PASSWORD],
        check=True, stdin=subprocess.DEVNULL, timeout=60,
    )


def main(argv) -> int:
    """Start Prosody, run the pair against it, stop Prosody; the pair's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", action="store_true", help="every stanza to stderr")
    parser.add_argument("--keep", action="store_true", help="keep Prosody's folder")
    args = parser.parse_args(argv)
    if not ProsodyServer.available() or shutil.which("prosodyctl") is None:
        print("prosody/prosodyctl not installed", file=sys.stderr)
        return 3
    workdir = Path(tempfile.mkdtemp(prefix="omemo-prosody-"))
    server = ProsodyServer(workdir, cpu=None)  # its config loads mod_pep
    try:
        try:
            server.start()
        except ServerError as error:
            print(error, file=sys.stderr)
            return 3
        for username in ("alice", "bob"):
            register(server, username)
        command = [sys.executable, str(PAIR), "--server", f"127.0.0.1:{server.port}",
                   "--domain", "localhost", "--password", PASSWORD]
        if args.trace:
            command.append("--trace")
        return subprocess.run(command, stdin=subprocess.DEVNULL, timeout=180).returncode
    finally:
        server.stop()
        if args.keep:
            print(f"Prosody's folder: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
