"""Shared test support: temporary certificates and a live in-process server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from xmppd import tls
from xmppd.config import Config, config_from_dict
from xmppd.service import XMPPServer

_CERTIFICATE_CACHE: dict[tuple[str, ...], tuple[bytes, bytes]] = {}


def make_test_certificate(
    testcase: unittest.TestCase, domains: tuple[str, ...] = ("localhost", "conference.localhost")
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
        "server": {"data_dir": str(base / "data")},
        "tls": {"certificate": str(cert), "key": str(key)},
        "c2s": {
            "listen": "tcp:0:interface=127.0.0.1",
            "direct_tls_listen": "",
            "require_encryption": False,
        },
        "components": {"listen": "tcp:0:interface=127.0.0.1"},
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
        """The port of another listener ('c2s_direct_tls', 'components')."""
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
