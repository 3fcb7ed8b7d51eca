"""xmppd.muc.messages: what the room relays of a groupchat message and a subject change."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NS_MUC_USER,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    parse,
)
from xmppd.muc.messages import subject_change

NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_HINTS = "urn:xmpp:hints"


def payload(stanza):
    """(namespace, name) of each child element, in order."""
    return [(e.uri, e.name) for e in stanza.elements()]


class SubjectChangeTests(unittest.TestCase):
    """Which messages change the subject (XEP-0045 8.1)."""

    def test_subject_alone(self):
        stanza = parse(
            "<message type='groupchat'><subject>S</subject>"
            f"<no-store xmlns='{NS_HINTS}'/></message>"
        )
        self.assertEqual(str(subject_change(stanza)), "S")

    def test_empty_subject_clears(self):
        stanza = parse("<message type='groupchat'><subject/></message>")
        self.assertEqual(str(subject_change(stanza)), "")

    def test_body_or_thread_make_an_ordinary_message(self):
        for extra in ("<body>b</body>", "<thread>t</thread>"):
            stanza = parse(f"<message type='groupchat'><subject>S</subject>{extra}</message>")
            self.assertIsNone(subject_change(stanza), extra)

    def test_no_subject(self):
        stanza = parse("<message type='groupchat'><body>b</body></message>")
        self.assertIsNone(subject_change(stanza))


class SubjectRelayTests(unittest.TestCase):
    """A subject change reaches every occupant with all that the sender included."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.room = self.h.service.rooms["room"]

    def test_payloads_are_relayed(self):
        self.h.send(
            ROMEO,
            f"<message type='groupchat' id='s1' to='{ROOM}'><subject>Love</subject>"
            f"<no-store xmlns='{NS_HINTS}'/><no-copy xmlns='{NS_HINTS}'/>"
            "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/>"
            f"<x xmlns='{NS_MUC_USER}'/></message>",
        )
        expected = [
            ("jabber:client", "subject"),
            (NS_HINTS, "no-store"),
            (NS_HINTS, "no-copy"),
            ("urn:xmpp:sid:0", "origin-id"),
            (NS_OCCUPANT_ID, "occupant-id"),  # the room's own (XEP-0421)
        ]
        for who in (ROMEO, JULIET):
            (message,) = self.h.take(who)
            self.assertEqual(message["from"], f"{ROOM}/Romeo")
            self.assertEqual(message["id"], "s1")
            self.assertEqual(payload(message), expected, who)  # muc#user is not relayed
        self.assertEqual(self.room.subject, "Love")
        self.assertEqual(self.room.subject_from, "Romeo")

    def test_joiner_gets_the_subject_alone(self):
        """The stored subject is sent to joiners as a subject message of its own."""
        self.h.send(
            ROMEO,
            f"<message type='groupchat' to='{ROOM}'><subject>Love</subject>"
            f"<no-store xmlns='{NS_HINTS}'/></message>",
        )
        subject = self.h.join(NURSE, "Nurse")[-1]
        self.assertEqual(subject["from"], f"{ROOM}/Romeo")
        self.assertEqual(payload(subject),
                         [("jabber:client", "subject"), (NS_OCCUPANT_ID, "occupant-id")])
        self.assertEqual(str(subject.subject), "Love")

    def test_subject_with_thread_is_an_ordinary_message(self):
        """Relayed whole, from anyone with voice; the room's subject stays."""
        self.room.subject = "Old"
        self.h.send(
            JULIET,
            f"<message type='groupchat' to='{ROOM}'><subject>New</subject>"
            f"<thread>t1</thread><no-store xmlns='{NS_HINTS}'/></message>",
        )
        for who in (ROMEO, JULIET):
            (message,) = self.h.take(who)
            self.assertEqual(
                payload(message),
                [("jabber:client", "subject"), ("jabber:client", "thread"), (NS_HINTS, "no-store"),
                 (NS_OCCUPANT_ID, "occupant-id")],
            )
        self.assertEqual(self.room.subject, "Old")

    def test_forbidden_change_relays_nothing(self):
        self.h.send(
            JULIET,
            f"<message type='groupchat' to='{ROOM}'><subject>Mine</subject>"
            f"<no-store xmlns='{NS_HINTS}'/></message>",
        )
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "forbidden")
        self.assertEqual(self.h.take(ROMEO), [])
        self.assertEqual(self.room.subject, "")
