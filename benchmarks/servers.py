"""Start and stop the servers under test: xmppd (twistd), Prosody and ejabberd, each in a folder.

Both listen for clients on 127.0.0.1 only, on a port picked free at start,
are pinned to one core (``taskset -c CPU``, or ``sched_setaffinity`` in the
child when taskset is missing) and are stopped with SIGTERM (SIGKILL after a
grace period). Data (accounts) lives in the folder given, so a server can be
restarted on the same accounts. Every server gets the same kind of
self-signed certificate (RSA 2048, :func:`make_certificate`) for STARTTLS,
which stays optional, so the plain-TCP mode of the generator works too.
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


DOMAINS = ("localhost", "conference.localhost", "pubsub.localhost")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed RSA 2048 certificate for localhost and conference.localhost (kept)."""
    cert, key = folder / "bench-cert.pem", folder / "bench-key.pem"
    if cert.exists() and key.exists():
        return cert, key
    folder.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServerError("openssl is needed to make the servers' self-signed certificate")
    done = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=" + ",".join(f"DNS:{d}" for d in DOMAINS)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise ServerError(f"openssl could not make a certificate: {done.stderr[-300:]}")
    return cert, key


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
        self.certificate, self.key = make_certificate(self.workdir)
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
        # The same kind of certificate as the other servers (not a generated one).
        text += f'\n[tls]\ncertificate = "{self.certificate}"\nkey = "{self.key}"\n'
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
password_hash = "SHA-256"  -- internal_hashed: SCRAM-SHA-256 keys (the default is SHA-1)
allow_registration = true
log = {{ {{ levels = {{ min = "warn" }}, to = "console" }} }}
-- The same features as xmppd: no stream management, carbons, MAM or CSI;
-- pep (XEP-0163, with XEP-0115 caps) for the pep workload.
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "posix"; "register"; "ping"; "offline";
    "pep";{extra_modules}
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
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        for domain in ("localhost", "conference.localhost"):  # Prosody finds them by name
            (certs / f"{domain}.crt").write_bytes(self.certificate.read_bytes())
            (certs / f"{domain}.key").write_bytes(self.key.read_bytes())
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


EJABBERD_CONFIG = """\
# ejabberd configuration written by benchmarks/servers.py (loopback only).
hosts:
  - "localhost"
loglevel: warning
hide_sensitive_log_data: true
log_rotate_count: 0
certfiles:
  - "{pem}"
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    shaper: none
    access: all
    backlog: 4096
    max_stanza_size: 10485760
s2s_access: none
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
# No per-IP limit on in-band registrations (the default is one per 10 minutes).
registration_timeout: infinity
access_rules:
  register:
    allow: all
shaper: {{}}
shaper_rules:
  max_user_sessions: 100000
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
# The same features as the other two: roster, disco, ping, offline, PEP with
# caps, in-band registration, MUC without flood limits; no stream management,
# carbons, MAM or CSI.
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_offline: {{}}
  mod_caps: {{}}
  mod_pubsub:
    plugins: ["flat", "pep"]
  mod_register:
    access: register
    ip_access: all
    password_strength: 0
  mod_muc:
    host: "conference.localhost"
    access_create: all
    max_users: 100000
    max_users_presence: 100000
    max_user_conferences: 1000
    min_message_interval: 0
    min_presence_interval: 0
    history_size: 0
    default_room_options:
      max_users: 100000
"""


#: ejabberd's modules for what xmppd does by default beyond the bare set
#: (``--reference-features full``): every chat message archived.
EJABBERD_FEATURES = """\
  mod_mam:
    default: always
  mod_carboncopy: {}
  mod_stream_mgmt: {}
  mod_client_state: {}
  mod_privacy: {}
  mod_blocking: {}
"""

#: Prosody's modules for the same (Prosody 0.12 ships all of them).
PROSODY_FEATURES = ("mam", "carbons", "smacks", "csi_simple", "blocklist")


def ejabberd_libs() -> Path | None:
    """The folder holding Debian's ejabberd-VERSION application folders (ERL_LIBS), or None."""
    for beam in sorted(Path("/usr/lib").glob("*/ejabberd-*/ebin/ejabberd.beam")):
        return beam.parent.parent.parent
    for beam in sorted(Path("/usr/lib").glob("ejabberd-*/ebin/ejabberd.beam")):
        return beam.parent.parent.parent
    return None


class EjabberdServer(Server):
    """ejabberd (Debian's package, 23.01 on bookworm) run straight from ``erl``, in the foreground.

    ``ejabberdctl`` would switch to the ``ejabberd`` system user (as root) and
    want a distributed node with epmd; running ``erl -s ejabberd`` without a
    node name (``nonode@nohost``: mnesia is local anyway) as the current user,
    with ``EJABBERD_CONFIG_PATH``/``EJABBERD_LOG_PATH`` and ``-mnesia dir``
    pointing into the work folder, needs neither. One scheduler (``+S 1:1``)
    since it is pinned to one core. Accounts are stored as SCRAM-SHA-256 keys.
    """

    name = "ejabberd"

    def __init__(self, workdir: Path, cpu: int | None = 0, features: bool = False):
        super().__init__(workdir, cpu)
        #: Also archiving (mod_mam, every message), carbons, stream management,
        #: client state indication and blocking, as xmppd has by default.
        self.features = features

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") when erl and the ejabberd application are installed, else why not."""
        if shutil.which("erl") is None:
            return False, "erl is not installed (apt-get install ejabberd)"
        if ejabberd_libs() is None:
            return False, "no ejabberd application under /usr/lib (apt-get install ejabberd)"
        return True, ""

    def command(self) -> list[str]:
        """erl -noinput -mnesia dir SPOOL -s ejabberd, on a config written here."""
        spool = self.workdir / "spool"
        spool.mkdir(exist_ok=True)
        pem = self.workdir / "bench-both.pem"
        pem.write_bytes(self.certificate.read_bytes() + self.key.read_bytes())
        config = self.workdir / "ejabberd.yml"
        text = EJABBERD_CONFIG.format(port=self.port, pem=pem)
        if self.features:
            text += EJABBERD_FEATURES
        config.write_text(text)
        return [shutil.which("erl") or "erl", "+K", "true", "+P", "1000000", "+S", "1:1",
                "+SDcpu", "1:1", "-noinput", "-mnesia", "dir", f'"{spool}"', "-s", "ejabberd"]

    def environment(self) -> dict[str, str]:
        """Where ejabberd finds its config and application, and writes its log."""
        env = dict(os.environ)
        env.update({
            "EJABBERD_CONFIG_PATH": str(self.workdir / "ejabberd.yml"),
            "EJABBERD_LOG_PATH": str(self.workdir / "ejabberd-internal.log"),
            "ERL_LIBS": str(ejabberd_libs()),
            "ERL_MAX_PORTS": "65536",
            "ERL_CRASH_DUMP": str(self.workdir / "erl_crash.dump"),
            "HOME": str(self.workdir),
        })
        return env
