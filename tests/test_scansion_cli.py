"""The scenario suite from the command line against a separately started twistd.

This is how anyone checks a running server (xmppd, or another one) with our
scripts: start ``twistd -n xmppd``, create the scripts' accounts with
``xmppdctl``, run ``python -m xmppd.scansion`` over tests/scenarios/*.scs
and expect ``N passed, 0 failed``.
"""

import os
import re
import sys
from pathlib import Path

from twisted.internet import defer, protocol, reactor, utils
from twisted.internet.error import ProcessExitedAlready
from twisted.trial import unittest

from tests.support import make_test_certificate
from xmppd.scansion import parse_script

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "tests" / "scenarios").glob("*.scs"))
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


class _Output(protocol.ProcessProtocol):
    """Collects a child's output; fires `listening` with the c2s port."""

    def __init__(self):
        self.output = b""
        self.listening = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data
        found = re.search(rb"c2s on 127\.0\.0\.1:(\d+)", self.output)
        if found and not self.listening.called:
            self.listening.callback(int(found.group(1)))

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(AssertionError(self.output.decode(errors="replace")))
        self.ended.callback(None)


class ScansionCommandLineTests(unittest.TestCase):
    """`python -m xmppd.scansion` runs the whole suite against a live twistd."""

    timeout = 300

    @defer.inlineCallbacks
    def test_suite_passes_against_twistd(self):
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        cert, key = make_test_certificate(self)
        config = folder / "xmppd.toml"
        config.write_text(
            '[c2s]\nlisten = "tcp:0:interface=127.0.0.1"\ndirect_tls_listen = ""\n'
            '[components]\nlisten = ""\n'
            f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        accounts = {}
        for path in SCENARIOS:
            for client in parse_script(path.read_text(encoding="utf-8")).clients:
                accounts[client.username] = client.password
        for username, password in sorted(accounts.items()):
            out, err, code = yield utils.getProcessOutputAndValue(
                sys.executable,
                ["-m", "xmppd.cli", "--config", str(config), "adduser", username,
                 "--password", password],
                env=env, path=str(REPO),
            )
            self.assertEqual(code, 0, (out + err).decode())

        server = _Output()
        transport = reactor.spawnProcess(
            server, sys.executable,
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "xmppd", "--config", str(config)],
            env=env, path=str(folder),
        )

        def stop():
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                pass
            return server.ended

        self.addCleanup(stop)
        port = yield server.listening
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            ["-m", "xmppd.scansion", "--host", "127.0.0.1", "--port", str(port),
             *[str(p) for p in SCENARIOS]],
            env=env, path=str(REPO),
        )
        output = out.decode()
        self.assertEqual(code, 0, output + err.decode())
        self.assertEqual(len(re.findall(r"(?m)^PASS ", output)), len(SCENARIOS), output)
        self.assertIn(f"\n{len(SCENARIOS)} passed, 0 failed", "\n" + output)
