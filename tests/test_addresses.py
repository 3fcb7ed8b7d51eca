"""Tests for xmppd.addresses: strict, cached JID parsing."""

from twisted.trial import unittest

from xmppd.addresses import normalised_domain, parse_jid, stanza_domain


class ParseJIDTests(unittest.TestCase):
    """RFC 7622 strictness on top of Twisted's parser, and the cache."""

    def test_normalises(self):
        parsed = parse_jid("Romeo@LocalHost/Orchard")
        self.assertEqual(parsed.full(), "romeo@localhost/Orchard")

    def test_invalid(self):
        for address in (None, "", "@localhost", "romeo@localhost/", "a@b@c", "x y@localhost"):
            self.assertIsNone(parse_jid(address), address)

    def test_cached(self):
        self.assertIs(parse_jid("juliet@localhost/balcony"), parse_jid("juliet@localhost/balcony"))

    def test_domains(self):
        self.assertEqual(stanza_domain("room@conference.localhost/Nick/with/slash"),
                         "conference.localhost")
        self.assertEqual(normalised_domain("a@LOCALHOST"), "localhost")
        self.assertIsNone(normalised_domain("a@b@c"))
