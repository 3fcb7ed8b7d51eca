"""Dialback keys (XEP-0185) and the stored secret."""

from pathlib import Path

from twisted.trial import unittest

from xmppd.s2s.dialback import dialback_key, key_is_valid, load_secret


class KeyTests(unittest.TestCase):
    """Keys are HMAC-SHA256 over the receiving and originating domains and the stream id."""

    def test_xep_0185_example(self):
        # The worked example of XEP-0185 section 3.
        self.assertEqual(
            dialback_key("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F"),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643")

    def test_every_input_changes_the_key(self):
        base = ("secret", "b.example", "a.example", "id1")
        key = dialback_key(*base)
        for position, other in enumerate(("other", "c.example", "x.example", "id2")):
            changed = list(base)
            changed[position] = other
            self.assertNotEqual(dialback_key(*changed), key, position)

    def test_verification(self):
        key = dialback_key("secret", "b.example", "a.example", "id1")
        self.assertTrue(key_is_valid("secret", "b.example", "a.example", "id1", key))
        # Whitespace around the text and upper-case hex are accepted.
        self.assertTrue(key_is_valid("secret", "b.example", "a.example", "id1",
                                     f"\n  {key.upper()} \n"))
        self.assertFalse(key_is_valid("secret", "b.example", "a.example", "id2", key))
        self.assertFalse(key_is_valid("other", "b.example", "a.example", "id1", key))
        self.assertFalse(key_is_valid("secret", "b.example", "a.example", "id1", ""))


class SecretTests(unittest.TestCase):
    """A configured secret wins; else one is generated once and kept."""

    def test_configured(self):
        folder = Path(self.mktemp())
        self.assertEqual(load_secret("given", folder), "given")
        self.assertFalse((folder / "s2s_secret").exists())

    def test_generated_once_and_private(self):
        folder = Path(self.mktemp())
        first = load_secret("", folder)
        self.assertEqual(len(first), 64)
        self.assertEqual(load_secret("", folder), first)
        self.assertEqual((folder / "s2s_secret").stat().st_mode & 0o777, 0o600)
        self.assertNotEqual(load_secret("", Path(self.mktemp())), first)
