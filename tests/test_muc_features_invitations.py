"""xmppd.muc.features.invitations: mediated invitations and declines."""

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
    muc_user_x,
)


def invitation(to: str = "nurse@localhost") -> str:
    return f"<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'><invite to='{to}'/></x></message>"


class InvitationTests(unittest.TestCase):
    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.room = self.h.service.rooms["room"]

    def test_invitation(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_roomsecret": "pw"})
        self.h.clear()
        self.h.send(
            JULIET,
            f"<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'>"
            "<invite to='nurse@localhost'><reason>come</reason></invite></x></message>",
        )
        (invite,) = self.h.take("nurse@localhost")
        self.assertEqual(invite["from"], ROOM)
        x = muc_user_x(invite)
        element = next(x.elements(NS_MUC_USER, "invite"))
        self.assertEqual(element["from"], JULIET)
        self.assertEqual(str(next(element.elements(NS_MUC_USER, "reason"))), "come")
        self.assertEqual(str(next(x.elements(NS_MUC_USER, "password"))), "pw")
        legacy = next(invite.elements("jabber:x:conference", "x"))
        self.assertEqual(legacy["jid"], ROOM)
        self.assertEqual(legacy["password"], "pw")

    def test_decline(self):
        self.h.send(
            NURSE,
            f"<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'>"
            f"<decline to='{JULIET}'><reason>busy</reason></decline></x></message>",
        )
        (decline,) = self.h.take(JULIET)
        element = next(muc_user_x(decline).elements(NS_MUC_USER, "decline"))
        self.assertEqual(element["from"], "nurse@localhost")

    def test_members_only_invite_makes_member(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.h.clear()
        self.h.send(
            ROMEO,
            f"<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'><invite to='nurse@localhost'/>"
            "</x></message>",
        )
        self.assertEqual(len(self.h.take("nurse@localhost")), 1)
        stanzas = self.h.join(NURSE, "Nurse")
        self.assertEqual(stanzas[-1].name, "message")

    def test_only_occupants_invite(self):
        self.h.send(NURSE, invitation("paris@localhost"))
        (error,) = self.h.take(NURSE)
        self.assertEqual(error_condition(error), "not-acceptable")
        self.assertEqual(self.h.take("paris@localhost"), [])

    def test_members_invite_when_allowed(self):
        self.room.affiliations.set("juliet@localhost", "member")
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.h.clear()
        self.h.send(JULIET, invitation())
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "forbidden")
        self.assertEqual(self.room.affiliations.get("nurse@localhost"), "none")
        self.h.configure(ROMEO, fields={"muc#roomconfig_allowinvites": "1"})
        self.h.send(JULIET, invitation())
        self.assertEqual(len(self.h.take("nurse@localhost")), 1)
        self.assertEqual(self.room.affiliations.get("nurse@localhost"), "member")

    def test_open_room_invitation_grants_nothing(self):
        self.h.send(JULIET, invitation())
        (invite,) = self.h.take("nurse@localhost")
        self.assertEqual(str(invite.body), f"juliet@localhost invited you to the room {ROOM}")
        self.assertEqual(list(muc_user_x(invite).elements(NS_MUC_USER, "password")), [])
        self.assertIsNone(self.room.affiliations.entry("nurse@localhost"))

    def test_bad_invitee(self):
        self.h.send(
            JULIET, f"<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'><invite/></x></message>"
        )
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "bad-request")

    def test_bad_decline_and_malformed_invitee(self):
        for payload, condition in (("<decline/>", "bad-request"),
                                   ("<decline to='a@b@c'/>", "jid-malformed"),
                                   ("<invite to='a@b@c'/>", "jid-malformed")):
            self.h.send(JULIET, f"<message to='{ROOM}'><x xmlns='{NS_MUC_USER}'>{payload}</x>"
                                "</message>")
            (error,) = self.h.take(JULIET)
            self.assertEqual(error_condition(error), condition, payload)
        self.assertEqual(self.flushLoggedErrors(), [])
