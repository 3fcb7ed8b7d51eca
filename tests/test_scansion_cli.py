"""The scenario suite from the command line against a separately started twistd.

This is how anyone checks a running server (xmppd, or another one) with our
scripts: start ``twistd -n xmppd``, create the scripts' accounts with
``xmppdctl``, run ``python -m xmppd.testing.scansion`` over tests/scenarios/*.scs
and expect ``N passed, 0 failed``; our own scripts with ``--strict-order``.
"""

import os
import re
import sys
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.support import make_test_certificate, process_output, spawn_twistd
from tests.test_scenarios import LENIENT, RUN_ONCE
from xmppd.testing.scansion import parse_script

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "tests" / "scenarios").glob("*.scs"))
STRICT_SCENARIOS = [p for p in SCENARIOS if p.name not in LENIENT]
LENIENT_SCENARIOS = [p for p in SCENARIOS if p.name in LENIENT]


class ScansionCommandLineTests(unittest.TestCase):
    """`python -m xmppd.testing.scansion` runs the whole suite against a live twistd."""

    timeout = 300

    @defer.inlineCallbacks
    def test_suite_passes_twice_against_twistd(self):
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        cert, key = make_test_certificate(self)
        config = folder / "xmppd.toml"
        config.write_text(
            '[c2s]\nlisten = "tcp:0:interface=127.0.0.1"\ndirect_tls_listen = ""\n'
            '[components]\nlisten = ""\n'
            '[http]\nlisten = ""\n'
            '[s2s]\nlisten = ""\n'
            f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        accounts = {}
        for path in SCENARIOS:
            for client in parse_script(path.read_text(encoding="utf-8")).clients:
                accounts[client.username] = client.password
        for username, password in sorted(accounts.items()):
            out, err, code = yield process_output(
                sys.executable,
                ["-m", "xmppd.cli", "--config", str(config), "adduser", username,
                 "--password", password],
                env=env, path=str(REPO),
            )
            self.assertEqual(code, 0, (out + err).decode())

        server = spawn_twistd(
            self, ["-n", "--pidfile=", "xmppd", "--config", str(config)], cwd=folder
        )
        found = yield server.wait_for(r"c2s on 127\.0\.0\.1:(\d+)")
        port = int(found.group(1))
        # Twice: the scripts leave the server as they found it (persistent
        # rooms destroyed, rosters emptied), so they can run again and again;
        # the second time without RUN_ONCE (what the server learnt stays
        # learnt). Our own scripts in strict order, the one for Prosody lenient.
        for round_number in range(2):
            again = [p for p in STRICT_SCENARIOS if round_number == 0 or p.name not in RUN_ONCE]
            for options, paths in (
                (["--strict-order"], again),
                ([], LENIENT_SCENARIOS),
            ):
                out, err, code = yield process_output(
                    sys.executable,
                    ["-m", "xmppd.testing.scansion", "--host", "127.0.0.1", "--port", str(port),
                     *options, *[str(p) for p in paths]],
                    env=env, path=str(REPO),
                )
                output = out.decode()
                self.assertEqual(code, 0, output + err.decode())
                self.assertEqual(len(re.findall(r"(?m)^PASS ", output)), len(paths), output)
                self.assertIn(f"\n{len(paths)} passed, 0 failed", "\n" + output)
