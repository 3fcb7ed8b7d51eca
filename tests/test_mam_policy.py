"""xmppd.mam.policy: which messages a personal archive keeps, and stanza-id handling."""

from twisted.trial import unittest

from tests.sm_fakes import stanza
from xmppd.mam import policy

BODY = "<body>hi</body>"

#: (description, message XML, archived?)
ROWS = [
    ("chat with a body", f"<message type='chat'>{BODY}</message>", True),
    ("normal with a body", f"<message type='normal'>{BODY}</message>", True),
    ("no type = normal", f"<message>{BODY}</message>", True),
    ("unknown type = normal", f"<message type='weird'>{BODY}</message>", True),
    ("subject only", "<message><subject>s</subject></message>", True),
    ("groupchat", f"<message type='groupchat'>{BODY}</message>", False),
    ("groupchat subject", "<message type='groupchat'><subject>s</subject></message>", False),
    ("headline", f"<message type='headline'>{BODY}</message>", False),
    ("error", f"<message type='error'>{BODY}<error type='cancel'/></message>", False),
    ("no-store", f"<message>{BODY}<no-store xmlns='urn:xmpp:hints'/></message>", False),
    ("no-permanent-store",
     f"<message>{BODY}<no-permanent-store xmlns='urn:xmpp:hints'/></message>", False),
    ("store hint", "<message type='chat'><store xmlns='urn:xmpp:hints'/></message>", True),
    ("chat state only",
     "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
     "</message>", False),
    ("thread only", "<message type='chat'><thread>t</thread></message>", False),
    ("empty", "<message type='chat'/>", False),
    ("omemo legacy",
     "<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
     True),
    ("omemo 2", "<message type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>", True),
    ("eme", "<message><encryption xmlns='urn:xmpp:eme:0' namespace='x'/></message>", True),
    ("receipt request", "<message><request xmlns='urn:xmpp:receipts'/></message>", True),
    ("receipt", "<message><received xmlns='urn:xmpp:receipts' id='a'/></message>", True),
    ("chat marker",
     "<message><displayed xmlns='urn:xmpp:chat-markers:0' id='a'/></message>", True),
    ("direct invitation", "<message><x xmlns='jabber:x:conference' jid='r@c'/></message>", True),
    ("mediated invitation",
     "<message><x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@b'/></x>"
     "</message>", True),
    ("muc#user without invite",
     "<message><x xmlns='http://jabber.org/protocol/muc#user'/></message>", False),
    ("jingle message 0",
     "<message><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>", True),
    ("jingle message 1",
     "<message><propose xmlns='urn:xmpp:jingle-message:1' id='c'/></message>", True),
    ("retraction 0", "<message><retract xmlns='urn:xmpp:message-retract:0'/></message>", True),
    ("retraction 1",
     "<message><retract xmlns='urn:xmpp:message-retract:1' id='a'/></message>", True),
    ("reaction", "<message><reactions xmlns='urn:xmpp:reactions:0' id='a'/></message>", True),
    ("sent carbon",
     f"<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     f"<message xmlns='jabber:client'>{BODY}</message></forwarded></sent></message>", False),
    ("received carbon",
     f"<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     f"<message xmlns='jabber:client'>{BODY}</message></forwarded></received></message>", False),
    ("private carbons hint still archived",
     f"<message type='chat'>{BODY}<private xmlns='urn:xmpp:carbons:2'/></message>", True),
    ("body in another namespace", "<message><body xmlns='urn:example'>x</body></message>", False),
]


class ArchivableTests(unittest.TestCase):
    """One row per rule of the policy."""

    def test_rows(self):
        for description, xml, expected in ROWS:
            with self.subTest(description):
                self.assertIs(policy.archivable(stanza(xml)), expected, description)

    def test_examine_also_says_whether_there_is_a_stanza_id(self):
        sid = "<stanza-id xmlns='urn:xmpp:sid:0' by='a@b' id='1'/>"
        for description, xml, expected in ROWS:
            with self.subTest(description):
                self.assertEqual(policy.examine(stanza(xml)), (expected, False))
                stamped = stanza(xml)
                stamped.addChild(stanza(sid))
                self.assertEqual(policy.examine(stamped), (expected, True))
        origin = "<origin-id xmlns='urn:xmpp:sid:0' id='1'/>"
        self.assertEqual(policy.examine(stanza(f"<message>{origin}</message>")), (False, False))


class StanzaIdTests(unittest.TestCase):
    """Stripping, stamping and reading stanza-ids."""

    def test_strip_only_those_by_the_archive(self):
        message = stanza(
            "<message><body>x</body>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='Bob@localhost' id='forged2'/>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='room@conference.localhost' id='keep'/>"
            "<origin-id xmlns='urn:xmpp:sid:0' id='origin'/></message>")
        before = message.children
        self.assertTrue(policy.strip_stanza_ids(message, "bob@localhost"))
        self.assertIsNot(message.children, before)  # a new list: copies keep theirs
        ids = [(c.name, c.getAttribute("by"), c["id"]) for c in message.elements()
               if c.uri == policy.NS_SID]
        self.assertEqual(ids, [("stanza-id", "room@conference.localhost", "keep"),
                               ("origin-id", None, "origin")])
        self.assertFalse(policy.strip_stanza_ids(message, "bob@localhost"))

    def test_add_and_read(self):
        message = stanza("<message><body>x</body></message>")
        before = message.children
        policy.add_stanza_id(message, "bob@localhost", "abc")
        self.assertEqual(len(before), 1)
        self.assertEqual(policy.stanza_id_of(message, "bob@localhost"), "abc")
        self.assertIsNone(policy.stanza_id_of(message, "alice@localhost"))
