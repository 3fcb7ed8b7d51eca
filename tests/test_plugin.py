"""The twistd plugin, run as a real ``twistd`` subprocess."""

import os
import signal
from pathlib import Path

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from tests.support import TwistdProcess, make_test_certificate, spawn_twistd


class Header(protocol.Protocol):
    """Sends a stream header and collects the reply."""

    def __init__(self):
        self.received = b""
        self.got_features = defer.Deferred()

    def connectionMade(self):
        self.transport.write(
            b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )

    def dataReceived(self, data):
        self.received += data
        if b"</stream:features>" in self.received and not self.got_features.called:
            self.got_features.callback(self.received)


class PluginTests(unittest.TestCase):
    """twistd finds the plugin, refuses bad configs, runs and stops cleanly."""

    timeout = 60

    def twistd(self, *args):
        return spawn_twistd(self, list(args), cwd=self.folder)

    def setUp(self):
        self.folder = Path(self.mktemp()).resolve()
        self.folder.mkdir()

    @defer.inlineCallbacks
    def test_help_lists_xmppd(self):
        process = self.twistd("--help")
        code = yield process.ended
        self.assertEqual(code, 0)
        self.assertIn(b"xmppd", process.output)

    def test_debug_switch(self):
        from twisted.plugins.xmppd_plugin import Options

        options = Options()
        options.parseOptions(["--debug", "--config", "x.toml"])
        self.assertTrue(options["debug"])
        options = Options()
        options.parseOptions([])
        self.assertFalse(options["debug"])

    @defer.inlineCallbacks
    def test_bad_config_stops_with_one_line(self):
        config = self.folder / "bad.toml"
        config.write_text("[c2s]\nprot = 5222\n")
        process = self.twistd("-n", "--pidfile=", "xmppd", "--config", str(config))
        code = yield process.ended
        self.assertEqual(code, 1)
        self.assertIn(f"xmppd: error: {config}: c2s.prot: unknown key\n".encode(), process.output)
        self.assertNotIn(b"Traceback", process.output)

    @defer.inlineCallbacks
    def test_port_in_use_stops_with_one_line(self):
        blocker = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        self.addCleanup(blocker.stopListening)
        config = self.write_config(f"tcp:{blocker.getHost().port}:interface=127.0.0.1")
        process = self.twistd("-n", "--pidfile=", "xmppd", "--config", str(config))
        code = yield process.ended
        self.assertEqual(code, 1)
        self.assertRegex(process.output.decode(), r"xmppd: error: c2s\.listen: cannot listen on")
        self.assertNotIn(b"Traceback", process.output)

    def write_config(self, listen):
        cert, key = make_test_certificate(self)
        config = self.folder / "xmppd.toml"
        config.write_text(
            f'[c2s]\nlisten = "{listen}"\ndirect_tls_listen = ""\n'
            f'[components]\nlisten = ""\n'
            '[http]\nlisten = ""\n'
            '[s2s]\nlisten = ""\n'
            f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
        )
        return config

    @defer.inlineCallbacks
    def test_runs_answers_and_stops_on_sigterm(self):
        config = self.write_config("tcp:0:interface=127.0.0.1")
        process = self.twistd("-n", "--pidfile=", "xmppd", "--config", str(config))
        found = yield process.wait_for(r"c2s on 127\.0\.0\.1:(\d+)")
        port = int(found.group(1))
        self.assertTrue((self.folder / "data" / "xmppd.sqlite").exists())
        client = Header()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        features = yield client.got_features
        self.assertIn(b"urn:ietf:params:xml:ns:xmpp-tls", features)
        client.transport.loseConnection()
        os.kill(process_pid(process), signal.SIGTERM)
        code = yield process.ended
        output = process.output.decode(errors="replace")
        # xmppd handles SIGTERM itself: a graceful stop exits 0 (not killed-by-signal).
        self.assertEqual((code, process.signal), (0, None), output)
        self.assertIn("SIGTERM: shutting down", output)
        self.assertIn("Server Shut Down.", output)
        self.assertNotIn("Traceback", output)


def process_pid(process: TwistdProcess) -> int:
    """The child's pid."""
    return process.transport.pid
