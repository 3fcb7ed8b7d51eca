"""Start and stop the servers under test: xmppd (twistd) and Prosody, each in its own folder.

Both listen for clients on 127.0.0.1 only, on a port picked free at start,
are pinned to one core (``taskset -c CPU``, or ``sched_setaffinity`` in the
child when taskset is missing) and are stopped with SIGTERM (SIGKILL after a
grace period). Data (accounts) lives in the folder given, so a server can be
restarted on the same accounts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
XMPPD_CONFIG = BENCH_DIR / "xmppd-bench.toml"
START_TIMEOUT = 60.0
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
STOP_TIMEOUT = 15.0


class ServerError(Exception):
    """A server would not start (the message says why)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(command: list[str], cpu: int | None) -> tuple[list[str], Any]:
    """The command prefixed with taskset (or a preexec_fn doing the same)."""
    if cpu is None:
        return command, None
    taskset = shutil.which("taskset")
    if taskset:
        return [taskset, "-c", str(cpu), *command], None

    def pin() -> None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass

    return command, pin


class Server:
    """A server process on loopback; subclasses say how to configure and run it."""

    name = "server"

    def __init__(self, workdir: Path, cpu: int | None = 0):
        self.workdir = workdir
        self.cpu = cpu
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self.process.pid if self.process is not None else None

    def command(self) -> list[str]:
        """The command line (written config files first)."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The child's environment."""
        return dict(os.environ)

    def start(self) -> None:
        """Write the config, start the process, wait until the c2s port answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command, preexec = pinned(self.command(), self.cpu)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec,
                start_new_session=True,  # Ctrl-C goes to the driver, which stops us
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise ServerError(f"{self.name} exited at start; see {self.log_path}:\n"
                                  + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise ServerError(f"{self.name} did not listen on {self.port} within {START_TIMEOUT}s")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; the exit status (None if not running)."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def loadgen_args(self) -> list[str]:
        """Where the load generator finds this server."""
        return ["--port", str(self.port), "--domain", "localhost",
                "--muc-domain", "conference.localhost"]


class XmppdServer(Server):
    """xmppd under ``twistd -n --pidfile= xmppd`` on a copy of xmppd-bench.toml."""

    name = "xmppd"

    def __init__(
        self,
        workdir: Path,
        cpu: int | None = 0,
        python: str = sys.executable,
        muc_limit: bool = False,
        disabled_modules: tuple[str, ...] = (),
        name: str | None = None,
    ):
        if name is not None:
            self.name = name
        super().__init__(workdir, cpu)
        self.python = python
        self.muc_limit = muc_limit
        self.disabled_modules = disabled_modules

    def write_config(self) -> Path:
        """benchmarks/xmppd-bench.toml with the c2s port replaced, in the work folder."""
        text = XMPPD_CONFIG.read_text()
        if "tcp:5222:" not in text:
            raise ServerError(f"{XMPPD_CONFIG}: no 'tcp:5222:' listener to re-port")
        text = text.replace("tcp:5222:", f"tcp:{self.port}:")
        if self.muc_limit:  # back to the server's default MUC flood limit
            text = "".join(
                line for line in text.splitlines(keepends=True)
                if not line.startswith(("message_rate", "message_burst"))
            )
        if self.disabled_modules:  # e.g. ("mam",): archiving off
            names = ", ".join(f'"{name}"' for name in self.disabled_modules)
            text += f"\n[modules]\ndisabled = [{names}]\n"
        path = self.workdir / "xmppd-bench.toml"
        path.write_text(text)
        return path

    def command(self) -> list[str]:
        """twistd -n --pidfile= xmppd --config COPY (with this Python)."""
        config = self.write_config()
        return [self.python, "-c", TWISTD, "-n", "--pidfile=", "xmppd", "--config", str(config)]

    def environment(self) -> dict[str, str]:
        """The repository first on PYTHONPATH (xmppd and its twistd plugin)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env


class HTTPXmppdServer(XmppdServer):
    """xmppd with its plain HTTP listener on a free loopback port (``http_port``), unlimited."""

    name = "xmppd-http"

    def write_config(self) -> Path:
        """The bench config with HTTP switched on, without a request rate limit."""
        path = super().write_config()
        self.http_port = free_port()
        text = path.read_text()
        text = text.replace('[http]\nlisten = ""', f'[http]\nlisten = '
                            f'"tcp:{self.http_port}:interface=127.0.0.1"\nrequest_rate = 0')
        path.write_text(text)
        return path


PROSODY_CONFIG = """\
-- Prosody configuration written by benchmarks/servers.py (loopback only).
daemonize = false
{run_as_root}pidfile = "{workdir}/prosody.pid"
data_path = "{workdir}/data"
certificates = "{workdir}/certs"
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "{authentication}"
allow_registration = true
log = {{ {{ levels = {{ min = "warn" }}, to = "console" }} }}
-- The same features as xmppd: no stream management, carbons, MAM or CSI;
-- pep (XEP-0163, with XEP-0115 caps) for the pep workload.
modules_enabled = {{
    "roster"; "saslauth"; "disco"; "posix"; "register"; "ping"; "offline"; "pep";{extra_modules}
}}
modules_disabled = {{ "s2s"; }}
VirtualHost "localhost"
Component "conference.localhost" "muc"
"""


class ProsodyServer(Server):
    """Prosody 0.12 (``prosody --config FILE -F``) with a config equivalent to xmppd's."""

    name = "prosody"

    def __init__(self, workdir: Path, cpu: int | None = 0, authentication: str = "internal_hashed",
                 extra_modules: tuple[str, ...] = (), name: str | None = None):
        if name is not None:
            self.name = name
        super().__init__(workdir, cpu)
        self.authentication = authentication
        self.extra_modules = extra_modules

    @staticmethod
    def available() -> bool:
        """True when the prosody executable is installed."""
        return shutil.which("prosody") is not None

    def command(self) -> list[str]:
        """prosody --config WORKDIR/prosody.cfg.lua -F."""
        (self.workdir / "data").mkdir(exist_ok=True)
        (self.workdir / "certs").mkdir(exist_ok=True)
        config = self.workdir / "prosody.cfg.lua"
        config.write_text(
            PROSODY_CONFIG.format(
                workdir=self.workdir,
                port=self.port,
                authentication=self.authentication,
                extra_modules="".join(f' "{name}";' for name in self.extra_modules),
                run_as_root="run_as_root = true\n" if os.geteuid() == 0 else "",
            )
        )
        return [shutil.which("prosody") or "prosody", "--config", str(config), "-F"]
