"""Tests for certificate generation and loading."""

import os
import stat
from pathlib import Path

from twisted.internet import ssl
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
