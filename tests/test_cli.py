"""Tests for xmppdctl, run in-process on a temporary config."""

import io
import sqlite3
import sys
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from xmppd import cli

REPO = Path(__file__).resolve().parent.parent


class XmppdctlTests(unittest.TestCase):
    """Account administration through the command."""

    def setUp(self):
        folder = Path(self.mktemp())
        folder.mkdir()
        self.config = folder / "xmppd.toml"
        self.config.write_bytes((REPO / "conf" / "xmppd.toml").read_bytes())
        self.database = folder / "data" / "xmppd.sqlite"

    @defer.inlineCallbacks
    def run_cli(self, *args, stdin=""):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.patch(sys, "stdin", io.StringIO(stdin))
        code = yield cli.run(["-c", str(self.config), *args])
        return code, out.getvalue(), err.getvalue()

    def usernames(self):
        connection = sqlite3.connect(self.database)
        self.addCleanup(connection.close)
        return [r[0] for r in connection.execute("SELECT username FROM accounts ORDER BY 1")]

    @defer.inlineCallbacks
    def test_adduser_list_passwd_deluser(self):
        self.assertEqual((yield self.run_cli("adduser", "romeo", "--password", "pw"))[:2],
                         (0, "created romeo@localhost\n"))
        code = (yield self.run_cli("adduser", "juliet@localhost", stdin="pw2\n"))[0]
        self.assertEqual(code, 0)
        self.assertEqual(self.usernames(), ["juliet", "romeo"])
        self.assertEqual((yield self.run_cli("list"))[:2],
                         (0, "juliet@localhost\nromeo@localhost\n"))
        self.assertEqual((yield self.run_cli("passwd", "romeo", stdin="new\n"))[0], 0)
        self.assertEqual((yield self.run_cli("deluser", "juliet"))[:2],
                         (0, "deleted juliet@localhost\n"))
        self.assertEqual(self.usernames(), ["romeo"])

    @defer.inlineCallbacks
    def test_password_never_printed(self):
        code, out, err = (yield self.run_cli("adduser", "romeo", stdin="hunter2\n"))
        self.assertEqual(code, 0)
        self.assertNotIn("hunter2", out + err)

    @defer.inlineCallbacks
    def test_failures(self):
        yield self.run_cli("adduser", "romeo", "--password", "pw")
        code, _, err = (yield self.run_cli("adduser", "romeo", "--password", "pw"))
        self.assertEqual((code, err), (1, "xmppdctl: error: account 'romeo' already exists\n"))
        self.assertEqual((yield self.run_cli("deluser", "nobody"))[0], 1)
        self.assertEqual((yield self.run_cli("passwd", "nobody", "--password", "x"))[0], 1)
        code, _, err = (yield self.run_cli("adduser", "x@example.org", "--password", "x"))
        self.assertEqual(code, 2)
        self.assertIn("serves localhost", err)
        code, _, err = (yield self.run_cli("adduser", "bad user", "--password", "x"))
        self.assertEqual(code, 1)
        self.assertIn("invalid username", err)
        code, _, err = (yield self.run_cli("adduser", "romeo2", stdin=""))
        self.assertEqual((code, err), (2, "xmppdctl: error: no password on standard input\n"))

    @defer.inlineCallbacks
    def test_bad_config(self):
        self.config.write_text("[c2s]\nprot = 1\n")
        code, _, err = (yield self.run_cli("list"))
        self.assertEqual(code, 2)
        self.assertEqual(err, f"xmppdctl: error: {self.config}: c2s.prot: unknown key\n")
