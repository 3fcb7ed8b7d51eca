"""xmppd.muc.features.members_only: members-only rooms."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    kinds,
    status_codes,
)
from xmppd.module import Scope


class MembersOnlyTests(unittest.TestCase):
    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.room = self.h.service.rooms["room"]

    def test_non_members_are_refused_before_the_password(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1",
                                        "muc#roomconfig_roomsecret": "pw"})
        (error,) = self.h.join(JULIET, "Juliet", password="wrong")
        self.assertEqual(error_condition(error), "registration-required")
        self.assertEqual(error.error["by"], ROOM)
        self.room.affiliations.set("juliet@localhost", "member")
        (error,) = self.h.join(JULIET, "Juliet", password="wrong")
        self.assertEqual(error_condition(error), "not-authorized")
        stanzas = self.h.join(JULIET, "Juliet", password="pw")
        self.assertEqual(status_codes(stanzas[-2]), ["110"])

    def test_admins_enter(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.room.affiliations.set("nurse@localhost", "admin")
        stanzas = self.h.join(NURSE, "Nurse")
        self.assertEqual(stanzas[-1].name, "message")

    def test_the_announcement_comes_before_the_removals(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        juliet = self.h.take(JULIET)
        self.assertEqual(
            kinds(juliet),
            [("message", ROOM, "groupchat"), ("presence", f"{ROOM}/Juliet", "unavailable")],
        )
        self.assertEqual(status_codes(juliet[0]), ["104"])
        self.assertEqual(status_codes(juliet[1]), ["322", "110"])
        self.assertEqual(list(self.room.occupants), ["Romeo"])

    def test_unchanged_setting_removes_nobody(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.room.affiliations.set("juliet@localhost", "member")
        self.h.join(JULIET, "Juliet")
        self.room.affiliations.set("juliet@localhost", "none")  # behind the room's back
        self.h.configure(ROMEO, fields={"muc#roomconfig_roomname": "x"})
        self.assertIn("Juliet", self.room.occupants)

    def test_disco_feature(self):
        modules = self.h.service.modules
        self.assertIn("muc_open", modules.features(Scope.ROOM, self.room))
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.assertIn("muc_membersonly", modules.features(Scope.ROOM, self.room))
