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
        self.assertEqual(element["from"], f"{ROOM}/Juliet")
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
        self.assertEqual(str(invite.body), f"{ROOM}/Juliet invited you to the room {ROOM}")
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


class InviterIdentityTests(unittest.TestCase):
    """Who the invitation says invited: the occupant JID unless the room is non-anonymous."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()

    def invite(self, sender: str, reason: str | None = None):
        inner = f"<reason>{reason}</reason>" if reason is not None else ""
        self.h.send(
            sender,
            f"<message to='{ROOM}' id='i1'><x xmlns='{NS_MUC_USER}'>"
            f"<invite to='nurse@localhost'>{inner}</invite></x></message>",
        )
        (message,) = self.h.take("nurse@localhost")
        return message

    def test_semi_anonymous_room_never_shows_the_real_jid(self):
        """Neither the bare nor the full JID appears anywhere in the invitation."""
        message = self.invite(JULIET, "come")
        xml = message.toXml()
        self.assertNotIn("juliet@localhost", xml)
        element = next(muc_user_x(message).elements(NS_MUC_USER, "invite"))
        self.assertEqual(element["from"], f"{ROOM}/Juliet")
        self.assertEqual(
            str(message.body), f"{ROOM}/Juliet invited you to the room {ROOM} (come)"
        )
        legacy = next(message.elements("jabber:x:conference", "x"))
        self.assertEqual(legacy["jid"], ROOM)
        self.assertEqual(message["from"], ROOM)

    def test_moderator_inviter_is_masked_too(self):
        """The owner's real JID stays hidden as well (moderators see JIDs, invitees do not)."""
        message = self.invite(ROMEO)
        self.assertNotIn("romeo@localhost", message.toXml())
        self.assertEqual(str(message.body), f"{ROOM}/Romeo invited you to the room {ROOM}")

    def test_reason_is_always_present(self):
        """An invitation without a reason carries an empty <reason/>."""
        message = self.invite(JULIET)
        element = next(muc_user_x(message).elements(NS_MUC_USER, "invite"))
        (reason,) = list(element.elements(NS_MUC_USER, "reason"))
        self.assertEqual(str(reason), "")
        legacy = next(message.elements("jabber:x:conference", "x"))
        self.assertIsNone(legacy.getAttribute("reason"))

    def test_non_anonymous_room_names_the_real_jid(self):
        """With whois anyone the invitation names the inviter's real JID (XEP-0045 7.8.2)."""
        self.h.configure(ROMEO, fields={"muc#roomconfig_whois": "anyone"})
        self.h.clear()
        message = self.invite(JULIET, "come")
        element = next(muc_user_x(message).elements(NS_MUC_USER, "invite"))
        self.assertEqual(element["from"], JULIET)
        self.assertEqual(
            str(message.body), f"juliet@localhost invited you to the room {ROOM} (come)"
        )

    def test_nick_change_is_followed(self):
        """The occupant JID is the inviter's current nick."""
        self.h.send(JULIET, f"<presence to='{ROOM}/Jules'/>")
        self.h.clear()
        message = self.invite(JULIET)
        element = next(muc_user_x(message).elements(NS_MUC_USER, "invite"))
        self.assertEqual(element["from"], f"{ROOM}/Jules")
