"""Tests for benchmarks/benchscram.py: the load generator's client-side SCRAM."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial import unittest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import benchscram  # noqa: E402

# RFC 7677 section 3: user "user", password "pencil", SCRAM-SHA-256.
CLIENT_NONCE = b"rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_client(cache: benchscram.ScramCache) -> benchscram.ScramClient:
    """A client with the RFC's nonce."""
    client = benchscram.ScramClient("SCRAM-SHA-256", "user", "pencil", cache)
    client.nonce = CLIENT_NONCE
    client.client_first_bare = b"n=user,r=" + CLIENT_NONCE
    return client


class ScramClientTests(unittest.TestCase):
    """The exchange against RFC 7677's example."""

    def test_rfc7677_example(self) -> None:
        """client-first, client-final and the server signature match the RFC."""
        client = rfc_client(benchscram.ScramCache())
        self.assertEqual(client.first(), b"n,,n=user,r=" + CLIENT_NONCE)
        self.assertEqual(client.final(SERVER_FIRST), CLIENT_FINAL)
        client.verify(SERVER_FINAL)  # no exception

    def test_wrong_server_signature(self) -> None:
        """A wrong v= or an e= error is refused."""
        client = rfc_client(benchscram.ScramCache())
        client.final(SERVER_FIRST)
        self.assertRaises(benchscram.ScramError, client.verify,
                          b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        self.assertRaises(benchscram.ScramError, client.verify, b"e=invalid-proof")

    def test_foreign_nonce(self) -> None:
        """A server nonce that does not extend ours is refused."""
        client = rfc_client(benchscram.ScramCache())
        self.assertRaises(benchscram.ScramError, client.final,
                          b"r=somethingelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")

    def test_name_escaping(self) -> None:
        """',' and '=' in a user name are escaped (RFC 5802 section 5.1)."""
        self.assertEqual(benchscram.saslname("a=b,c"), "a=3Db=2Cc")


class ScramCacheTests(unittest.TestCase):
    """PBKDF2 once per (account, salt, iterations)."""

    def test_once_per_key(self) -> None:
        """A second login of the same account costs no PBKDF2; another salt does."""
        cache = benchscram.ScramCache()
        rfc_client(cache).final(SERVER_FIRST)
        rfc_client(cache).final(SERVER_FIRST)
        self.assertEqual((cache.computed, cache.hits), (1, 1))
        other_salt = SERVER_FIRST.replace(b"W22ZaJ0SNY7soEsUEjb6gQ==", b"QUJDREVGR0g=")
        rfc_client(cache).final(other_salt)
        self.assertEqual((cache.computed, cache.hits), (2, 1))

    def test_file_round_trip(self) -> None:
        """Keys saved to the cache file serve a later process (a new cache)."""
        path = Path(self.mktemp())
        first = benchscram.ScramCache(path)
        rfc_client(first).final(SERVER_FIRST)
        first.save()
        second = benchscram.ScramCache(path)
        self.assertEqual(second.loaded, 1)
        client = rfc_client(second)
        self.assertEqual(client.final(SERVER_FIRST), CLIENT_FINAL)
        self.assertEqual((second.computed, second.hits), (0, 1))
