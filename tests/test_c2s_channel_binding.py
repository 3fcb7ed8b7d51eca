"""xmppd.c2s.channel_binding: the tls-server-end-point hash and its per-certificate cache."""

import hashlib

from OpenSSL import crypto
from twisted.trial import unittest

from tests.support import make_test_certificate
from xmppd.c2s import channel_binding


def load(testcase, domains):
    """A pyOpenSSL certificate for ``domains`` (self-signed, SHA-256)."""
    cert, _ = make_test_certificate(testcase, domains)
    return crypto.load_certificate(crypto.FILETYPE_PEM, cert.read_bytes())


class EndPointHashTests(unittest.TestCase):
    """RFC 5929 §4.1 hash, computed once per certificate."""

    def setUp(self):
        self.patch(channel_binding, "_END_POINT_HASHES", {})

    def test_sha256_certificate(self):
        certificate = load(self, ("a.example",))
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)
        self.assertEqual(channel_binding.end_point_hash(certificate.to_cryptography()),
                         hashlib.sha256(der).digest())

    def test_cache_is_per_certificate(self):
        first, second = load(self, ("a.example",)), load(self, ("b.example",))
        for certificate in (first, second, first):
            self.assertEqual(channel_binding._cached_end_point_hash(certificate),
                             channel_binding.end_point_hash(certificate.to_cryptography()))
        self.assertEqual(len(channel_binding._END_POINT_HASHES), 2)

    def test_cache_is_bounded(self):
        self.patch(channel_binding, "MAX_CACHED_CERTIFICATES", 1)
        channel_binding._cached_end_point_hash(load(self, ("a.example",)))
        channel_binding._cached_end_point_hash(load(self, ("b.example",)))
        self.assertEqual(len(channel_binding._END_POINT_HASHES), 1)
