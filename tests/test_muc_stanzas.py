"""xmppd.muc.stanzas: helpers shared by the room core and the MUC modules."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import parse
from xmppd.errors import StanzaError
from xmppd.muc.stanzas import (
    NEWER_UNICODE_NICK,
    NS_MUC,
    bounce_presence,
    child,
    parse_jid,
    resourceprep_nick,
    stored_presence,
)


class StanzaHelperTests(unittest.TestCase):
    def test_nicks(self):
        self.assertEqual(resourceprep_nick("Ju\u00adliet"), "Juliet")  # soft hyphen mapped out
        for bad in ("", " ", "a" * 1024, "\u05d0a"):
            exc = self.assertRaises(StanzaError, resourceprep_nick, bad)
            self.assertEqual(exc.condition, "jid-malformed")

    def test_newer_unicode_nick_is_refused_with_a_reason(self):
        """An emoji nick reaches the room (RFC 7622 allows it) and the room refuses it."""
        for nick in ("\U0001f339", "Juliet \U0001f339"):
            exc = self.assertRaises(StanzaError, resourceprep_nick, nick)
            self.assertEqual((exc.condition, exc.type), ("jid-malformed", "modify"))
            self.assertEqual(exc.text, NEWER_UNICODE_NICK)
        exc = self.assertRaises(StanzaError, resourceprep_nick, "x\ufffd")
        self.assertEqual(exc.text, "invalid nickname")

    def test_jids(self):
        self.assertEqual(parse_jid("romeo@localhost/r").userhost(), "romeo@localhost")
        self.assertEqual(self.assertRaises(StanzaError, parse_jid, None).condition, "bad-request")
        self.assertEqual(self.assertRaises(StanzaError, parse_jid, "@@").condition,
                         "jid-malformed")

    def test_stored_presence_drops_muc_payloads(self):
        stanza = parse(f"<presence><show>away</show><x xmlns='{NS_MUC}'><password>p</password>"
                       "</x></presence>")
        kept = stored_presence(stanza)
        self.assertEqual([c.name for c in kept.elements()], ["show"])
        self.assertEqual(list(stored_presence(None).elements()), [])

    def test_bounce_presence_names_the_error(self):
        stanza = parse(
            "<message type='error'><error type='cancel'>"
            "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>moved</text></error></message>"
        )
        self.assertEqual(str(child(bounce_presence(stanza), "status")), "Kicked: gone: moved")

