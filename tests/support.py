"""Shared test support: temporary certificates and a live in-process server."""

from __future__ import annotations

import gc
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor, utils
from twisted.internet.error import ProcessExitedAlready
from twisted.trial import unittest

from xmppd import tls
from xmppd.config import Config, config_from_dict
from xmppd.service import XMPPServer

_CERTIFICATE_CACHE: dict[tuple[str, ...], tuple[bytes, bytes]] = {}


def make_test_certificate(
    testcase: unittest.TestCase,
    domains: tuple[str, ...] = ("localhost", "conference.localhost", "pubsub.localhost",
                                "upload.localhost"),
) -> tuple[Path, Path]:
    """A self-signed certificate and key in the test's temp dir (generated once per run)."""
    if domains not in _CERTIFICATE_CACHE:
        scratch = Path(testcase.mktemp()).resolve()
        tls.ensure_certificate(scratch / "c.pem", scratch / "k.pem", list(domains))
        _CERTIFICATE_CACHE[domains] = (
            (scratch / "c.pem").read_bytes(),
            (scratch / "k.pem").read_bytes(),
        )
    folder = Path(testcase.mktemp()).resolve()
    folder.mkdir(parents=True)
    cert_bytes, key_bytes = _CERTIFICATE_CACHE[domains]
    (folder / "cert.pem").write_bytes(cert_bytes)
    (folder / "key.pem").write_bytes(key_bytes)
    return folder / "cert.pem", folder / "key.pem"


def make_test_config(testcase: unittest.TestCase, **sections: dict[str, Any]) -> Config:
    """A config for a server on 127.0.0.1 port 0 with a temp data dir.

    Keyword arguments are TOML sections whose keys override the test defaults,
    e.g. ``c2s={"require_encryption": True}``.
    """
    base = Path(testcase.mktemp()).resolve()
    base.mkdir(parents=True)
    cert, key = make_test_certificate(testcase)
    data: dict[str, dict[str, Any]] = {
        # No control socket: a test's folder may be too long a path for one.
        "server": {"data_dir": str(base / "data"), "control_socket": ""},
        "tls": {"certificate": str(cert), "key": str(key)},
        "c2s": {
            "listen": "tcp:0:interface=127.0.0.1",
            "direct_tls_listen": "",
            "require_encryption": False,
        },
        "components": {"listen": "tcp:0:interface=127.0.0.1"},
        "http": {"listen": "tcp:0:interface=127.0.0.1"},
        # Federation is off unless a test turns it on: no DNS, no port 5269.
        "s2s": {"listen": "tcp:0:interface=127.0.0.1", "enabled": False},
        "log": {"level": "warn"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data, base)


class LiveServer:
    """A running in-process server and what tests need to reach it."""

    def __init__(self, server: XMPPServer):
        self.server = server
        self.config = server.config
        self.accounts = server.accounts
        self.router = server.router

    @property
    def port(self) -> int:
        """The c2s port on 127.0.0.1."""
        return self.server.port_number("c2s")

    def port_of(self, name: str) -> int:
        """The port of another listener ('c2s_direct_tls', 'components', 'http', 'https')."""
        return self.server.port_number(name)

    def create_user(self, username: str, password: str) -> defer.Deferred:
        """Create an account."""
        return self.accounts.create(username, password)


def start_server(testcase: unittest.TestCase, config: Config | None = None,
                 **sections: dict[str, Any]) -> LiveServer:
    """Start the real service on loopback port 0; it stops at test cleanup."""
    if config is None:
        config = make_test_config(testcase, **sections)
    server = XMPPServer(config)
    server.privilegedStartService()
    server.startService()
    testcase.addCleanup(server.stopService)
    return LiveServer(server)


REPO = Path(__file__).resolve().parent.parent

#: ``python -c TWISTD ARGS...`` runs twistd with ARGS from the repository's code.
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


class TwistdProcess(protocol.ProcessProtocol):
    """A twistd child: collects its output; fires when it prints a pattern or ends."""

    def __init__(self):
        self.output = b""
        self.ended = defer.Deferred()
        self.signal: int | None = None
        self.transport = None
        self.watch: tuple[re.Pattern, defer.Deferred] | None = None

    def wait_for(self, pattern: str) -> defer.Deferred:
        """Fires with the regex match once the output contains it (fails if the child ends)."""
        d = defer.Deferred()
        self.watch = (re.compile(pattern.encode()), d)
        self._check()
        return d

    def _check(self):
        if self.watch is not None:
            found = self.watch[0].search(self.output)
            if found:
                d = self.watch[1]
                self.watch = None
                d.callback(found)

    def outReceived(self, data):
        self.output += data
        self._check()

    errReceived = outReceived

    def processEnded(self, reason):
        if self.watch is not None:
            self.watch[1].errback(AssertionError(self.output.decode(errors="replace")))
            self.watch = None
        self.signal = getattr(reason.value, "signal", None)
        self.ended.callback(reason.value.exitCode)


def process_output(executable: str, args: list[str], **kwargs: Any) -> defer.Deferred:
    """``utils.getProcessOutputAndValue``, but a death by signal N is exit code -N.

    Twisted errbacks with a bare ``(out, err, signal)`` tuple when a process
    is killed, which a test would report as an unrelated error without the
    process's output; here it fires like any other end (out, err, -N), as
    ``subprocess`` reports it, so the test's own assertion shows the output.
    """

    def killed(reason: Any) -> Any:
        if isinstance(reason.value, tuple) and len(reason.value) == 3:
            out, err, signal = reason.value
            return out, err, -signal
        return reason

    d = utils.getProcessOutputAndValue(executable, args, **kwargs)
    return d.addErrback(killed)


def spawn_twistd(
    testcase: unittest.TestCase,
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str | None] | None = None,
    command: list[str] | None = None,
    child_fds: dict[int, Any] | None = None,
) -> TwistdProcess:
    """Start ``twistd ARGS`` (or ``command``) from the repository's code; killed at cleanup.

    ``env`` entries are added to the environment (a None value removes one).
    """
    process = TwistdProcess()
    environ = dict(os.environ, PYTHONPATH=str(REPO))
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    transport = reactor.spawnProcess(
        process, sys.executable, command or [sys.executable, "-c", TWISTD, *args],
        env=environ, path=str(cwd), childFDs=child_fds,
    )

    def kill():
        if not process.ended.called:
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
            return process.ended
        return None

    testcase.addCleanup(kill)
    return process


def pump_handshake(client: Any, server: Any, rounds: int = 20) -> None:
    """Drive a TLS handshake between two pyOpenSSL connections on memory BIOs."""
    from OpenSSL import SSL

    for _ in range(rounds):
        for a, b in ((client, server), (server, client)):
            try:
                a.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                b.bio_write(a.bio_read(65536))
            except SSL.WantReadError:
                pass


def without_collector(testcase):
    """Turn the cycle collector off for the test: only reference counting frees."""
    if gc.isenabled():
        gc.disable()
        testcase.addCleanup(gc.enable)


def short_folder(testcase) -> Path:
    """A new folder under /tmp, removed afterwards.

    Short enough for UNIX socket paths (108 bytes), wherever the test run's
    own temporary folder happens to be.
    """
    folder = Path(tempfile.mkdtemp(prefix="xmppd-test-"))
    testcase.addCleanup(shutil.rmtree, folder, True)
    return folder


def port_is_free(port: int, interface: str = "") -> bool:
    """Whether interface:port can be bound now (as servers bind: SO_REUSEADDR)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((interface, port))
        except OSError:
            return False
    return True
