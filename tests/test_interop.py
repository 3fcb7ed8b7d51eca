"""Interop: a real XMPP client library (slixmpp) against a live xmppd."""

import sys
from pathlib import Path

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from tests.support import start_server

PAIR = Path(__file__).resolve().parent / "interop" / "slixmpp_pair.py"


class SlixmppTests(unittest.TestCase):
    """slixmpp logs in with SCRAM-SHA-256 over STARTTLS and chats."""

    timeout = 60

    @defer.inlineCallbacks
    def run_pair(self, romeo_password):
        """Run the slixmpp pair against a fresh server; fires with (stdout, stderr, code)."""
        server = start_server(self, c2s={"require_encryption": True})
        yield server.create_user("romeo", "r0meo-pw")
        yield server.create_user("juliet", "jul1et-pw")
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            [
                str(PAIR), "127.0.0.1", str(server.port), str(server.config.tls.certificate),
                "romeo@localhost", romeo_password, "juliet@localhost", "jul1et-pw",
            ],
            reactor=reactor,
        )
        return out.decode(), err.decode(), code

    @defer.inlineCallbacks
    def test_login_subscribe_presence_and_chat(self):
        output, errors, code = yield self.run_pair("r0meo-pw")
        self.assertEqual(code, 0, output + errors[-3000:])
        self.assertIn("first online as romeo@localhost/", output)
        self.assertIn("mechanism=SCRAM-SHA-256", output)
        self.assertRegex(output, r"tls=TLSv1\.[23]")
        self.assertIn("second saw-presence romeo@localhost/", output)
        self.assertIn("first saw-presence juliet@localhost/", output)
        self.assertIn("second got-message from=romeo@localhost body=hello from slixmpp", output)

    @defer.inlineCallbacks
    def test_wrong_password_is_refused(self):
        output, _, code = yield self.run_pair("wrong")
        self.assertNotEqual(code, 0)
        self.assertIn("first auth-failed", output)
