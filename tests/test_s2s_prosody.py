"""Federation with Prosody: xmppd (a.example) and a real Prosody (p.example) on loopback.

Runs when Prosody is installed (Debian's ``prosody`` package, with
lua-unbound) and the tests run as root; skips otherwise. Prosody finds xmppd
through a small DNS server the test runs on 127.0.N.7:53 (its resolver is
pointed there with ``unbound.resolvconf``); xmppd finds Prosody through a
static route. Both use their generated self-signed certificates, so they
authenticate each other by dialback over TLS.

Prosody needs xmppd on port 5269, so both listen on addresses of their own
in 127.0.0.0/8: 127.0.N.5 for xmppd, 127.0.N.6 for Prosody and 127.0.N.7 for
the DNS, N different for each test (trial -j runs them side by side).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.names import common, dns
from twisted.names import error as names_error
from twisted.names import server as names_server
from twisted.trial import unittest

from tests.support import make_test_certificate, start_server
from tests.test_s2s_e2e import domain_config, login
from tests.test_server_e2e import element, next_stanza
from xmppd.testing.scansion.client import ScansionClient
from xmppd.testing.scansion.parser import ClientAccount

XMPPD_NAMES = ("a.example", "conference.a.example", "pubsub.a.example")


class LoopbackNames(common.ResolverBase):
    """A DNS answering A queries for xmppd's names with its address, NXDOMAIN otherwise."""

    def __init__(self, address):
        super().__init__()
        self.address = address

    def _lookup(self, name, cls, type, timeout):
        name = name.decode() if isinstance(name, bytes) else str(name)
        if type == dns.A and name.lower() in XMPPD_NAMES:
            answer = dns.RRHeader(name, dns.A, ttl=60, payload=dns.Record_A(self.address))
            return defer.succeed(([answer], [], []))
        return defer.fail(names_error.DomainError(name))

PROSODY_CONFIG = """
run_as_root = true
daemonize = false
pidfile = "{folder}/prosody.pid"
data_path = "{folder}/data"
log = {{ debug = "{folder}/prosody.log" }}
plugin_paths = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "vcard_legacy";
                    "presence"; "message"; "iq" }}
modules_disabled = {{ "offline"; "c2s_limits" }}
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "{address}" }}
s2s_ports = {{ 5269 }}
s2s_interfaces = {{ "{address}" }}
http_ports = {{ }}
https_ports = {{ }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = true
s2s_secure_auth = false
authentication = "internal_plain"
unbound = {{ hoststxt = "{folder}/hosts"; resolvconf = "{folder}/resolv.conf" }}
certificates = "{folder}/certs"

VirtualHost "p.example"
    ssl = {{ certificate = "{cert}"; key = "{key}" }}

Component "conference.p.example" "muc"
    ssl = {{ certificate = "{cert}"; key = "{key}" }}
"""


def free_port(address: str) -> int:
    """A TCP port free on that address now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def port_is_free(address: str, port: int) -> bool:
    """Whether address:port can be bound now (as servers bind: SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


class ProsodyFederationTests(unittest.TestCase):
    """Chat, presence and MUC between xmppd and Prosody, both ways, over dialback."""

    timeout = 120

    def setUp(self):
        names = sorted(n for n in dir(self) if n.startswith("test_"))
        net = 10 + names.index(self._testMethodName)
        self.xmppd_address, self.prosody_address, self.dns_address = (
            f"127.0.{net}.{host}" for host in (5, 6, 7))
        if shutil.which("prosody") is None or shutil.which("prosodyctl") is None:
            raise unittest.SkipTest("Prosody is not installed (apt install prosody lua-unbound)")
        if not list(Path("/usr/lib").glob("**/lunbound.so")):
            raise unittest.SkipTest("Prosody's lua-unbound is not installed (apt install "
                                    "lua-unbound): the test points its resolver at a test DNS")
        if not all(port_is_free(a, 5269) for a in (self.xmppd_address, self.prosody_address)):
            raise unittest.SkipTest(f"port 5269 is taken on {self.xmppd_address} or "
                                    f"{self.prosody_address}")
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (a DNS server on port 53 for Prosody)")
        return self.start()

    @defer.inlineCallbacks
    def start(self):
        folder = Path(self.mktemp()).resolve()
        (folder / "data").mkdir(parents=True)
        (folder / "certs").mkdir()
        (folder / "hosts").write_text(
            f"{self.xmppd_address} a.example conference.a.example pubsub.a.example\n")
        # Prosody's resolver asks our little DNS server: a.example's names have
        # A records, everything else is NXDOMAIN (no SRV: port 5269).
        names = names_server.DNSServerFactory(clients=[LoopbackNames(self.xmppd_address)])
        self.dns_port = reactor.listenUDP(53, dns.DNSDatagramProtocol(names),
                                          interface=self.dns_address)
        self.addCleanup(self.dns_port.stopListening)
        (folder / "resolv.conf").write_text(f"nameserver {self.dns_address}\n")
        cert, key = make_test_certificate(self, ("p.example", "conference.p.example"))
        self.prosody_c2s = free_port(self.prosody_address)
        config = folder / "prosody.cfg.lua"
        config.write_text(PROSODY_CONFIG.format(folder=folder, c2s_port=self.prosody_c2s,
                                                address=self.prosody_address, cert=cert, key=key))
        self.prosody_folder = folder
        subprocess.run(["prosodyctl", "--config", str(config), "register", "carol",
                        "p.example", "pw"], check=True, capture_output=True, timeout=30)
        self.process = subprocess.Popen(["prosody", "--config", str(config), "-F"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.stop_prosody)
        self.a = start_server(self, domain_config(
            self, "a.example", self.xmppd_address,
            listen=f"tcp:5269:interface={self.xmppd_address}",
            routes={"p.example": f"tcp:host={self.prosody_address}:port=5269",
                    "conference.p.example": f"tcp:host={self.prosody_address}:port=5269"}))
        yield self.a.create_user("alice", "pw")
        yield self.wait_for_prosody()
        self.alice = yield login(self.a, "alice", self.xmppd_address)
        self.addCleanup(self.alice.disconnect)
        self.carol = ScansionClient(ClientAccount("carol", "carol@p.example", "pw", "res"))
        yield self.carol.connect(self.prosody_address, self.prosody_c2s, timeout=10)
        self.addCleanup(self.carol.disconnect)
        self.carol.send(element("<presence/>"))

    @defer.inlineCallbacks
    def wait_for_prosody(self):
        for _ in range(100):
            if not port_is_free(self.prosody_address, self.prosody_c2s):
                return
            if self.process.poll() is not None:
                log = (self.prosody_folder / "prosody.log").read_text(errors="replace")
                self.fail("Prosody exited:\n" + log[-3000:])
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.fail("Prosody did not listen")

    def stop_prosody(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def prosody_log(self):
        return (self.prosody_folder / "prosody.log").read_text(errors="replace")[-4000:]

    @defer.inlineCallbacks
    def test_chat_both_ways(self):
        self.alice.send(element("<message to='carol@p.example' type='chat' id='m1'>"
                                "<body>hello Prosody</body></message>"))
        try:
            got = yield next_stanza(self.carol, lambda s: s.name == "message", timeout=20)
        except AssertionError:
            self.fail("no message at Prosody; its log:\n" + self.prosody_log())
        self.assertEqual((got["from"], str(got.body)), ("alice@a.example/res", "hello Prosody"))
        self.carol.send(element("<message to='alice@a.example/res' type='chat' id='m2'>"
                                "<body>hello xmppd</body></message>"))
        got = yield next_stanza(self.alice, lambda s: s.name == "message", timeout=20)
        self.assertEqual((got["from"], str(got.body)), ("carol@p.example/res", "hello xmppd"))
        lines = [(c.direction, c.local, c.remote, c.tls, c.auth)
                 for c in self.a.server.s2s.connections()]
        self.assertIn(("out", "a.example", ("p.example",), True, "dialback"), lines)

    @defer.inlineCallbacks
    def test_subscription_and_presence(self):
        self.alice.send(element("<presence to='carol@p.example' type='subscribe'/>"))
        yield next_stanza(self.carol, lambda s: s.name == "presence"
                          and s.getAttribute("type") == "subscribe", timeout=20)
        self.carol.send(element("<presence to='alice@a.example' type='subscribed'/>"))
        approved = yield next_stanza(self.alice, lambda s: s.name == "presence"
                                     and s.getAttribute("type") == "subscribed", timeout=20)
        self.assertEqual(approved["from"], "carol@p.example")
        available = yield next_stanza(self.alice, lambda s: s.name == "presence"
                                      and s.getAttribute("type") is None, timeout=20)
        self.assertEqual(available["from"], "carol@p.example/res")

    @defer.inlineCallbacks
    def test_rooms_both_ways(self):
        # alice (xmppd) creates a room on Prosody; carol (Prosody) one on xmppd.
        self.alice.send(element("<presence to='r1@conference.p.example/alice'>"
                                "<x xmlns='http://jabber.org/protocol/muc'/></presence>"))
        joined = yield next_stanza(self.alice, lambda s: s.name == "presence"
                                   and s["from"].startswith("r1@"), timeout=20)
        self.assertIsNone(joined.getAttribute("type"))
        self.carol.send(element("<presence to='r2@conference.a.example/carol'>"
                                "<x xmlns='http://jabber.org/protocol/muc'/></presence>"))
        joined = yield next_stanza(self.carol, lambda s: s.name == "presence"
                                   and s["from"].startswith("r2@"), timeout=20)
        self.assertIsNone(joined.getAttribute("type"))
