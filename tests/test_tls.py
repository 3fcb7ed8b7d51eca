"""Tests for certificate generation and loading."""

import os
import socket
import ssl as stdlib_ssl
import stat
from pathlib import Path

from twisted.internet import defer, endpoints, protocol, reactor, ssl, threads
from twisted.trial import unittest

from xmppd import tls


class CertificateTests(unittest.TestCase):
    """Self-signed generation, loading and domain checks."""

    def setUp(self):
        self.folder = Path(self.mktemp())
        self.cert = self.folder / "server.crt"
        self.key = self.folder / "server.key"

    def test_generate_once(self):
        self.assertTrue(tls.ensure_certificate(self.cert, self.key, ["localhost", "muc.localhost"]))
        first = self.cert.read_bytes()
        self.assertFalse(tls.ensure_certificate(self.cert, self.key, ["localhost"]))
        self.assertEqual(self.cert.read_bytes(), first)
        self.assertEqual(stat.S_IMODE(os.stat(self.key).st_mode), 0o600)

    def test_options_and_domains(self):
        tls.ensure_certificate(self.cert, self.key, ["localhost", "muc.localhost"])
        options = tls.server_tls_options(self.cert, self.key)
        self.assertIsInstance(options, ssl.CertificateOptions)
        self.assertIsNotNone(options.getContext())
        self.assertEqual(tls.certificate_mismatches(self.cert, ["localhost", "muc.localhost"]), [])
        self.assertEqual(tls.certificate_mismatches(self.cert, ["example.org"]), ["example.org"])

    def test_key_of_another_certificate(self):
        tls.ensure_certificate(self.cert, self.key, ["localhost"])
        other = Path(self.mktemp())
        tls.ensure_certificate(other / "c", other / "k", ["localhost"])
        error = self.assertRaises(tls.CertificateProblem, tls.server_tls_options,
                                  self.cert, other / "k")
        self.assertIn("does not belong", str(error))

    def test_unreadable_and_garbage(self):
        self.folder.mkdir()
        self.cert.write_text("not a certificate")
        self.key.write_text("not a key")
        self.assertIn("not a PEM certificate",
                      str(self.assertRaises(tls.CertificateProblem, tls.server_tls_options,
                                            self.cert, self.key)))
        self.assertIn("cannot read",
                      str(self.assertRaises(tls.CertificateProblem, tls.server_tls_options,
                                            self.folder / "missing", self.key)))


class ALPNTests(unittest.TestCase):
    """A client offering ALPN gets a handshake (xmpp-client or http/1.1 chosen, else none)."""

    def setUp(self):
        folder = Path(self.mktemp())
        cert, key = folder / "server.crt", folder / "server.key"
        tls.ensure_certificate(cert, key, ["localhost"])
        factory = protocol.Factory.forProtocol(protocol.Protocol)
        endpoint = endpoints.SSL4ServerEndpoint(
            reactor, 0, tls.server_tls_options(cert, key), interface="127.0.0.1")
        d = endpoint.listen(factory)

        def listening(port):
            self.port = port.getHost().port
            self.addCleanup(port.stopListening)

        return d.addCallback(listening)

    def handshake(self, offered):
        """Connect with Python's ssl module (in a thread); the protocol ALPN chose."""

        def connect():
            context = stdlib_ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = stdlib_ssl.CERT_NONE
            context.set_alpn_protocols(offered)
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as wrapped:
                    return wrapped.selected_alpn_protocol()

        return threads.deferToThread(connect)

    @defer.inlineCallbacks
    def test_xmpp_client(self):
        self.assertEqual((yield self.handshake(["xmpp-client"])), "xmpp-client")

    @defer.inlineCallbacks
    def test_http(self):
        self.assertEqual((yield self.handshake(["h2", "http/1.1"])), "http/1.1")

    @defer.inlineCallbacks
    def test_nothing_we_speak_still_connects(self):
        self.assertIsNone((yield self.handshake(["imap"])))
