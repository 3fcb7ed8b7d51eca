"""xmppd.muc.features.history: the discussion history replayed to joiners."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import JULIET, NURSE, ROMEO, ROOM, MUCHarness, kinds
from xmppd.datetimes import format_stamp
from xmppd.muc.features.history import History, HistoryRequest, parse_stamp

NS_DELAY = "urn:xmpp:delay"


def subject_text(stanza):
    for element in stanza.elements():
        if element.name == "subject":
            return str(element)
    return None


def body_text(stanza):
    for element in stanza.elements():
        if element.name == "body":
            return str(element)
    return None


class HistoryTests(unittest.TestCase):
    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")

    def say(self, who, text):
        self.h.send(who, f"<message type='groupchat' to='{ROOM}'><body>{text}</body></message>")

    def test_history_default_and_delay(self):
        for i in range(25):
            self.say(ROMEO, f"m{i}")
            self.h.clock.advance(1)
        stanzas = self.h.join(JULIET, "Juliet")
        history = [s for s in stanzas if s.name == "message" and body_text(s)]
        self.assertEqual(len(history), 20)
        self.assertEqual(body_text(history[0]), "m5")
        delay = next(history[0].elements(NS_DELAY, "delay"))
        self.assertEqual(delay["from"], ROOM)
        self.assertTrue(delay["stamp"].endswith("Z"))
        self.assertEqual(history[0]["from"], f"{ROOM}/Romeo")
        # order: occupants, self, history, subject
        self.assertEqual(stanzas[1]["from"], f"{ROOM}/Juliet")
        self.assertIsNotNone(subject_text(stanzas[-1]))

    def test_history_limits(self):
        for i in range(5):
            self.say(ROMEO, f"m{i}")
            self.h.clock.advance(10)
        got = self.h.join(JULIET, "Juliet", extra="<history maxstanzas='2'/>")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["m3", "m4"])
        got = self.h.join(NURSE, "Nurse", extra="<history maxchars='0'/>")
        self.assertEqual([body_text(s) for s in got if body_text(s)], [])
        got = self.h.join("a@localhost/a", "A", extra="<history seconds='25'/>")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["m3", "m4"])
        stamp = "2001-09-09T01:46:50Z"  # 1_000_000_010 + 0: after m0 and m1? m1 at ..010
        got = self.h.join("b@localhost/b", "B", extra=f"<history since='{stamp}'/>")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["m2", "m3", "m4"])
        got = self.h.join("c@localhost/c", "C", extra="<history maxchars='bogus'/>")
        self.assertEqual(len([s for s in got if body_text(s)]), 5)

    def test_history_length_config(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_historylength": "2"})
        for i in range(5):
            self.say(ROMEO, f"m{i}")
        got = self.h.join(JULIET, "Juliet")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["m3", "m4"])

    def test_subject_changes_and_bodiless_messages_are_not_history(self):
        self.h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>S</subject></message>")
        self.h.send(
            ROMEO,
            f"<message type='groupchat' to='{ROOM}'>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        )
        self.say(ROMEO, "hello")
        got = self.h.join(JULIET, "Juliet")
        self.assertEqual(
            kinds(got),
            [("presence", f"{ROOM}/Romeo", None), ("presence", f"{ROOM}/Juliet", None),
             ("message", f"{ROOM}/Romeo", "groupchat"), ("message", f"{ROOM}/Romeo", "groupchat")],
        )
        self.assertEqual(body_text(got[2]), "hello")
        self.assertEqual(subject_text(got[3]), "S")

    def test_shrinking_keeps_the_newest(self):
        for i in range(5):
            self.say(ROMEO, f"m{i}")
        self.h.configure(ROMEO, fields={"muc#roomconfig_historylength": "2"})
        got = self.h.join(NURSE, "Nurse")
        self.assertEqual([body_text(s) for s in got if body_text(s)], ["m3", "m4"])
        self.h.configure(ROMEO, fields={"muc#roomconfig_historylength": "0"})
        self.say(ROMEO, "gone")
        got = self.h.join(JULIET, "Juliet")
        self.assertEqual([body_text(s) for s in got if body_text(s)], [])


class HistoryStoreTests(unittest.TestCase):
    def test_stamps(self):
        self.assertEqual(format_stamp(0), "1970-01-01T00:00:00Z")
        self.assertEqual(format_stamp(0.5), "1970-01-01T00:00:00.500000Z")
        self.assertEqual(parse_stamp("1970-01-01T00:00:10Z"), 10)
        self.assertEqual(parse_stamp("1970-01-01T00:00:10"), 10)
        self.assertIsNone(parse_stamp("yesterday"))

    def test_request_ignores_bad_values(self):
        request = HistoryRequest.from_element(None)
        self.assertEqual(request, HistoryRequest())
        empty = History(0)
        self.assertEqual(len(empty), 0)
