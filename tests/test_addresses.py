"""Tests for xmppd.addresses: strict, cached JID parsing."""

from twisted.trial import unittest

from xmppd.addresses import (
    normalised_domain,
    parse_jid,
    relaxed_jid,
    relaxed_resourcepart,
    stanza_domain,
)


class ParseJIDTests(unittest.TestCase):
    """RFC 7622 strictness on top of Twisted's parser, and the cache."""

    def test_normalises(self):
        parsed = parse_jid("Romeo@LocalHost/Orchard")
        self.assertEqual(parsed.full(), "romeo@localhost/Orchard")

    def test_invalid(self):
        for address in (None, "", "@localhost", "romeo@localhost/", "a@b@c", "x y@localhost",
                        "a..b", "romeo@local..host/r", "."):  # (empty labels: IndexError)
            self.assertIsNone(parse_jid(address), address)

    def test_cached(self):
        self.assertIs(parse_jid("juliet@localhost/balcony"), parse_jid("juliet@localhost/balcony"))

    def test_domains(self):
        self.assertEqual(stanza_domain("room@conference.localhost/Nick/with/slash"),
                         "conference.localhost")
        self.assertEqual(normalised_domain("a@LOCALHOST"), "localhost")
        self.assertIsNone(normalised_domain("a@b@c"))


class RelaxedResourcepartTests(unittest.TestCase):
    """Resourceparts RFC 7622 allows that Unicode 3.2's resourceprep does not know."""

    def test_newer_characters(self):
        for resource in ("\U0001f339", "Juliet \U0001f339", "\u0221", "\U0001f1eb\U0001f1f7"):
            self.assertEqual(relaxed_resourcepart(resource), resource)

    def test_resourceprep_rules_still_apply(self):
        """Mapping and NFKC as resourceprep does them (ZWJ and variation selector 16 map away)."""
        self.assertEqual(relaxed_resourcepart("\ufb01\U0001f339"), "fi\U0001f339")
        self.assertEqual(relaxed_resourcepart("\U0001f339\ufe0f"), "\U0001f339")
        self.assertEqual(relaxed_resourcepart("\U0001f468\u200d\U0001f469"), "\U0001f468\U0001f469")

    def test_refused(self):
        for resource in (
            "",
            "plain",  # nothing newer than 3.2: strict resourceprep's business
            "\x07\U0001f339",  # control
            "\ufffd\U0001f339",  # prohibited in 3.2
            "\U000f0001",  # private use
            "\U000e0101",  # variation selector
            "\U0001fffe",  # noncharacter
            "\U000e0001\U0001f339",  # language tag (prohibited)
            "\u05d0\U0001f339",  # bidi
            "\U0001f339" * 256,  # 1024 octets
        ):
            self.assertIsNone(relaxed_resourcepart(resource), repr(resource))

    def test_at_most_1023_octets(self):
        self.assertIsNotNone(relaxed_resourcepart("\U0001f339" * 255 + "abc"))


class RelaxedJIDTests(unittest.TestCase):
    """parse_jid accepts a newer resourcepart; other parts stay strict."""

    def test_parse_jid(self):
        parsed = parse_jid("Room@Conference.Localhost/\U0001f339")
        self.assertEqual(parsed.full(), "room@conference.localhost/\U0001f339")
        self.assertEqual(parsed.userhost(), "room@conference.localhost")
        self.assertEqual(parsed.resource, "\U0001f339")
        self.assertIs(parse_jid("Room@Conference.Localhost/\U0001f339"), parsed)  # cached
        self.assertEqual(normalised_domain("room@Conference.Localhost/\U0001f339"),
                         "conference.localhost")

    def test_domain_jid_with_resource(self):
        self.assertEqual(relaxed_jid("localhost/\U0001f339").full(), "localhost/\U0001f339")

    def test_strict_parts(self):
        for address in (
            "ro\U0001f339m@localhost/\U0001f339",
            "@localhost/\U0001f339",
            "a@b@c/\U0001f339",
            "room@localhost/",
            "room@localhost/x\ufffd",
        ):
            self.assertIsNone(parse_jid(address), repr(address))
            self.assertIsNone(relaxed_jid(address), repr(address))
        self.assertIsNone(relaxed_jid("room@localhost"))  # nothing to relax


class PartLengthTests(unittest.TestCase):
    """RFC 7622: each part of a JID is at most 1023 octets."""

    def test_longest_parts_accepted(self):
        for address in ("a" * 1023 + "@x", "x@" + "a" * 63 + "." + "b" * 63,
                        "x@y/" + "r" * 1023):
            self.assertIsNotNone(parse_jid(address), address[:20])

    def test_longer_parts_refused(self):
        for address in ("a" * 1024 + "@x", "x@" + "a" * 2000, "x@y/" + "r" * 1024,
                        "x@y/" + "\u00e9" * 512):
            self.assertIsNone(parse_jid(address), address[:20])
