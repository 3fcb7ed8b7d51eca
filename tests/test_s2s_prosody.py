"""Federation with Prosody: xmppd (a.example) and a real Prosody (p.example) on loopback.

Runs when Prosody is installed (Debian's ``prosody`` package, with
lua-unbound) and the tests run as root; skips otherwise. Prosody finds xmppd
through a small DNS server the test runs on 127.0.N.7:53 (its resolver is
pointed there with ``unbound.resolvconf``): SRV records for xmppd's names and
A records for their target; xmppd finds Prosody through a static route.

Two runs of the same checks (chat, subscription and presence, rooms on
either side):

* :class:`ProsodyDialbackTests`: both use self-signed certificates and
  authenticate each other by dialback over TLS; Prosody connects to xmppd's
  STARTTLS port (``_xmpp-server`` SRV).
* :class:`ProsodyCertificateTests`: a test authority signs both servers'
  certificates and both trust it; Prosody refuses dialback
  (``s2s_secure_auth``), xmppd too (``trusted_domains``), so both directions
  must authenticate by SASL EXTERNAL; Prosody connects to xmppd's direct TLS
  port (``_xmpps-server`` SRV, XEP-0368).

Each test has addresses of its own in 127.0.0.0/8: 127.0.N.5 for xmppd,
127.0.N.6 for Prosody and 127.0.N.7 for the DNS, N different for each test
(trial -j runs them side by side) and moving on by 20 while port 53 is taken
there (by another run); the servers' ports are free ones found at start.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.internet.error import CannotListenError
from twisted.names import common, dns
from twisted.names import error as names_error
from twisted.names import server as names_server
from twisted.trial import unittest

from tests.support import make_test_certificate, port_is_free, start_server
from tests.test_s2s_e2e import domain_config, login, write_ca_signed
from tests.test_server_e2e import element, next_stanza
from xmppd.testing.scansion.client import ScansionClient
from xmppd.testing.scansion.parser import ClientAccount

XMPPD_NAMES = ("a.example", "conference.a.example", "pubsub.a.example")


class LoopbackNames(common.ResolverBase):
    """A DNS answering A queries for xmppd's names with its address and SRV queries of
    one service for them with its port (see :meth:`answer`); NXDOMAIN otherwise."""

    def __init__(self):
        super().__init__()
        self.address = None
        self.srv = {}

    def answer(self, address, service, port):
        """xmppd is at ``address``; ``service`` (``_xmpp-server`` or ``_xmpps-server``)
        on ``port``."""
        self.address = address
        self.srv = {f"{service}._tcp.{n}": port for n in XMPPD_NAMES}

    def _lookup(self, name, cls, type, timeout):
        name = (name.decode() if isinstance(name, bytes) else str(name)).lower()
        if type == dns.A and name in XMPPD_NAMES:
            answer = dns.RRHeader(name, dns.A, ttl=60, payload=dns.Record_A(self.address))
            return defer.succeed(([answer], [], []))
        if type == dns.SRV and name in self.srv:
            target = name.split(".", 2)[2]
            answer = dns.RRHeader(name, dns.SRV, ttl=60,
                                  payload=dns.Record_SRV(0, 0, self.srv[name], target))
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
s2s_ports = {{ {s2s_port} }}
s2s_interfaces = {{ "{address}" }}
http_ports = {{ }}
https_ports = {{ }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = true
s2s_secure_auth = {secure_auth}
authentication = "internal_plain"
unbound = {{ hoststxt = "{folder}/hosts"; resolvconf = "{folder}/resolv.conf" }}
certificates = "{folder}/certs"
ssl = {{ {cafile} }}

VirtualHost "p.example"
    ssl = {{ certificate = "{cert}"; key = "{key}"; {cafile} }}

Component "conference.p.example" "muc"
    ssl = {{ certificate = "{cert}"; key = "{key}"; {cafile} }}
"""


def free_port(address: str) -> int:
    """A TCP port free on that address now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]




class ProsodyFederation:
    """Starts Prosody (p.example, carol) and xmppd (a.example, alice); the checks.

    Subclasses say how the servers authenticate each other (``expected_auth``)
    and which N of 127.0.N.x their tests start from (``first_net``).
    """

    timeout = 120
    first_net = 10
    #: How xmppd's S2S streams with Prosody must say they authenticated.
    expected_auth = "dialback"

    def setUp(self):
        if shutil.which("prosody") is None or shutil.which("prosodyctl") is None:
            raise unittest.SkipTest("Prosody is not installed (apt install prosody lua-unbound)")
        if not list(Path("/usr/lib").glob("**/lunbound.so")):
            raise unittest.SkipTest("Prosody's lua-unbound is not installed (apt install "
                                    "lua-unbound): the test points its resolver at a test DNS")
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (a DNS server on port 53 for Prosody)")
        self.names = LoopbackNames()
        self.dns_port = self.listen_dns()
        self.addCleanup(self.dns_port.stopListening)
        return self.start()

    def listen_dns(self):
        """The test DNS on port 53 of 127.0.N.7, for the first N free (another run of
        this module may be using some): N picks the other addresses too."""
        names = sorted(n for n in dir(self) if n.startswith("test_"))
        factory = names_server.DNSServerFactory(clients=[self.names])
        for net in range(self.first_net + names.index(self._testMethodName), 250, 20):
            address = f"127.0.{net}.7"
            try:
                port = reactor.listenUDP(53, dns.DNSDatagramProtocol(factory),
                                         interface=address)
            except CannotListenError:
                continue
            self.xmppd_address, self.prosody_address, self.dns_address = (
                f"127.0.{net}.{host}" for host in (5, 6, 7))
            return port
        raise unittest.SkipTest("port 53 is taken on every 127.0.N.7 tried")

    def certificates(self, folder):
        """(Prosody's certificate, its key, xmppd's [tls] and [s2s] settings, Prosody's
        cafile option): self-signed ones for dialback."""
        cert, key = make_test_certificate(self, ("p.example", "conference.p.example"))
        return cert, key, {}, {}, ""

    def xmppd_s2s_settings(self):
        """xmppd's [s2s] listeners (free ports on its address)."""
        return {"listen": f"tcp:{free_port(self.xmppd_address)}:interface={self.xmppd_address}"}

    def xmppd_srv(self):
        """The SRV service Prosody's DNS answers for xmppd's names, and its port."""
        return "_xmpp-server", int(self.s2s_settings["listen"].split(":")[1])

    @defer.inlineCallbacks
    def start(self):
        folder = Path(self.mktemp()).resolve()
        (folder / "data").mkdir(parents=True)
        (folder / "certs").mkdir()
        (folder / "hosts").write_text(
            f"{self.xmppd_address} a.example conference.a.example pubsub.a.example\n")
        cert, key, tls, s2s, cafile = self.certificates(folder)
        self.s2s_settings = {**self.xmppd_s2s_settings(), **s2s}
        # Prosody's resolver asks our little DNS server: SRV records for
        # a.example's names, A records for them, NXDOMAIN for everything else.
        service, port = self.xmppd_srv()
        self.names.answer(self.xmppd_address, service, port)
        (folder / "resolv.conf").write_text(f"nameserver {self.dns_address}\n")
        self.prosody_c2s = free_port(self.prosody_address)
        prosody_s2s = free_port(self.prosody_address)
        config = folder / "prosody.cfg.lua"
        config.write_text(PROSODY_CONFIG.format(
            folder=folder, c2s_port=self.prosody_c2s, s2s_port=prosody_s2s,
            address=self.prosody_address, cert=cert, key=key,
            secure_auth="true" if cafile else "false", cafile=cafile))
        self.prosody_folder = folder
        subprocess.run(["prosodyctl", "--config", str(config), "register", "carol",
                        "p.example", "pw"], check=True, capture_output=True, timeout=30)
        self.process = subprocess.Popen(["prosody", "--config", str(config), "-F"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.stop_prosody)
        route = f"tcp:host={self.prosody_address}:port={prosody_s2s}"
        xmppd_config = domain_config(
            self, "a.example", self.xmppd_address,
            routes={"p.example": route, "conference.p.example": route}, **self.s2s_settings)
        if tls:
            xmppd_config = xmppd_config.replace(tls=xmppd_config.tls.__class__(**tls))
        self.a = start_server(self, xmppd_config)
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
            if not port_is_free(self.prosody_c2s, self.prosody_address):
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

    def assert_authenticated(self, *directions):
        """xmppd's streams with Prosody include these directions ("out", "in") for
        p.example, and every one of them authenticated the expected way."""
        lines = [(c.direction, c.local, c.remote, c.tls, c.auth)
                 for c in self.a.server.s2s.connections()]
        for direction in directions:
            self.assertIn((direction, "a.example", ("p.example",), True, self.expected_auth),
                          lines)
        wrong = [line for line in lines if "p.example" in line[2]
                 and line[4] != self.expected_auth]
        self.assertEqual(wrong, [], repr(lines))

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
        try:
            got = yield next_stanza(self.alice, lambda s: s.name == "message", timeout=20)
        except AssertionError:
            self.fail("no message from Prosody; its log:\n" + self.prosody_log())
        self.assertEqual((got["from"], str(got.body)), ("carol@p.example/res", "hello xmppd"))
        self.assert_authenticated("out", "in")

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
        self.assert_authenticated("out", "in")

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
        lines = [(c.direction, c.local, c.remote, c.tls, c.auth)
                 for c in self.a.server.s2s.connections()]
        self.assertIn(("out", "a.example", ("conference.p.example",), True, self.expected_auth),
                      lines)
        self.assertIn(("in", "conference.a.example", ("p.example",), True, self.expected_auth),
                      lines)


class ProsodyDialbackTests(ProsodyFederation, unittest.TestCase):
    """Chat, presence and MUC between xmppd and Prosody, both ways, over dialback."""


class ProsodyCertificateTests(ProsodyFederation, unittest.TestCase):
    """The same with certificates from a test authority both trust: SASL EXTERNAL both
    ways (a dialback fallback fails the test), Prosody over xmppd's direct TLS port."""

    first_net = 20
    expected_auth = "SASL EXTERNAL"

    def certificates(self, folder):
        from cryptography.hazmat.primitives import serialization

        from tests.s2s_fakes import make_certificate, make_key

        ca_key = make_key()
        now = datetime.datetime.now(datetime.UTC)
        ca = make_certificate("Federation Test CA", ca_key, ca=True,
                              not_before=now - datetime.timedelta(days=1),
                              not_after=now + datetime.timedelta(days=30))
        ca_file = folder / "ca.pem"
        ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        authority = ("Federation Test CA", ca_key)
        prosody_cert, prosody_key = (p.resolve() for p in
                                     write_ca_signed(self, "p.example", authority))
        xmppd_cert, xmppd_key = write_ca_signed(self, "a.example", authority)
        s2s = {"ca_file": str(ca_file),
               "trusted_domains": ["p.example", "conference.p.example"]}
        return (prosody_cert, prosody_key, {"certificate": xmppd_cert, "key": xmppd_key}, s2s,
                f'cafile = "{ca_file}"')

    def xmppd_s2s_settings(self):
        settings = super().xmppd_s2s_settings()
        port = free_port(self.xmppd_address)
        settings["direct_tls_listen"] = f"tcp:{port}:interface={self.xmppd_address}"
        return settings

    def xmppd_srv(self):
        return "_xmpps-server", int(self.s2s_settings["direct_tls_listen"].split(":")[1])

    def assert_authenticated(self, *directions):
        super().assert_authenticated(*directions)
        if "in" in directions:
            # Prosody came in through the direct TLS port (XEP-0368).
            incoming = [s for s in self.a.server.s2s.incoming if "p.example" in s.authenticated]
            self.assertTrue(incoming)
            self.assertTrue(all(s.direct_tls for s in incoming))
