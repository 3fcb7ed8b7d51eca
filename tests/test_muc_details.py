"""The details a mature MUC gets right (issue 4, items 4 and 9) not covered elsewhere.

Owners' privileges at the door (password, max users), nick changes of
occupants with several sessions, reserved nicks at nick change, the end of
membership on deregistration, resourceprep of nicks.
"""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NS_MUC_ADMIN,
    NURSE,
    ROMEO,
    ROOM,
    TYBALT,
    MUCHarness,
    error_condition,
    item_of,
    kinds,
    status_codes,
)

JULIET2 = "juliet@localhost/phone"



class OwnerAtTheDoorTests(unittest.TestCase):
    """XEP-0045 7.2.10 (max users) and the room secret, for owners and admins."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(
            ROMEO,
            "Romeo",
            fields={"muc#roomconfig_roomsecret": "pw", "muc#roomconfig_maxusers": "2"},
        )

    def grant(self, bare, affiliation):
        self.h.send(
            ROMEO,
            f"<iq type='set' id='g' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            f"<item jid='{bare}' affiliation='{affiliation}'/></query></iq>",
        )
        self.h.clear()

    def test_owner_needs_the_password_too(self):
        """XEP-0045 7.2.6 exempts no affiliation from the room password."""
        self.grant("juliet@localhost", "owner")
        (error,) = self.h.join(JULIET, "Juliet")
        self.assertEqual(error_condition(error), "not-authorized")
        stanzas = self.h.join(JULIET, "Juliet", password="pw")
        self.assertEqual(stanzas[0]["from"], f"{ROOM}/Romeo")
        self.assertIn("Juliet", self.h.service.rooms["room"].occupants)

    def test_admin_and_member_need_the_password(self):
        self.grant("juliet@localhost", "admin")
        self.grant("nurse@localhost", "member")
        for who, nick in ((JULIET, "Juliet"), (NURSE, "Nurse")):
            (error,) = self.h.join(who, nick)
            self.assertEqual(error_condition(error), "not-authorized")
            self.assertEqual(error.error["code"], "401")

    def test_owner_and_admin_pass_max_users(self):
        self.grant("tybalt@localhost", "owner")
        self.grant("juliet@localhost", "admin")
        self.h.join(NURSE, "Nurse", password="pw")  # full now: 2 of 2
        (error,) = self.h.join("paris@localhost/p", "Paris", password="pw")
        self.assertEqual(error_condition(error), "service-unavailable")
        self.assertEqual(error.error["type"], "wait")
        self.h.join(JULIET, "Juliet", password="pw")
        self.h.join(TYBALT, "Tybalt", password="pw")
        self.assertEqual(
            sorted(self.h.service.rooms["room"].occupants), ["Juliet", "Nurse", "Romeo", "Tybalt"]
        )
        self.grant("paris@localhost", "member")
        (error,) = self.h.join("paris@localhost/p", "Paris", password="pw")
        self.assertEqual(error_condition(error), "service-unavailable")


class MultiSessionNickChangeTests(unittest.TestCase):
    """A session of a multi-session occupant changing nick moves alone (as Prosody does)."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.join(JULIET2, "Juliet")
        self.h.clear()
        self.room = self.h.service.rooms["room"]

    def test_one_session_moves(self):
        self.h.send(JULIET2, f"<presence to='{ROOM}/Jules'><show>away</show></presence>")
        moved = self.h.take(JULIET2)
        self.assertEqual(
            kinds(moved),
            [
                ("presence", f"{ROOM}/Juliet", "unavailable"),
                ("presence", f"{ROOM}/Jules", None),
                ("presence", f"{ROOM}/Juliet", None),
            ],
        )
        self.assertEqual(status_codes(moved[0]), ["303", "110"])
        self.assertEqual(item_of(moved[0])["nick"], "Jules")
        self.assertEqual(item_of(moved[0])["jid"], JULIET2)
        self.assertEqual(status_codes(moved[1]), ["110"])
        self.assertEqual(item_of(moved[2])["jid"], JULIET)
        # Romeo sees Juliet stay (an update, no 303) and Jules arrive
        romeo = self.h.take(ROMEO)
        self.assertEqual(
            kinds(romeo),
            [("presence", f"{ROOM}/Juliet", None), ("presence", f"{ROOM}/Jules", None)],
        )
        self.assertEqual(status_codes(romeo[0]), [])
        self.assertEqual(item_of(romeo[1])["jid"], JULIET2)
        # the remaining session sees itself updated and Jules arrive
        remaining = self.h.take(JULIET)
        self.assertEqual(status_codes(remaining[0]), ["110"])
        self.assertEqual(remaining[1]["from"], f"{ROOM}/Jules")
        self.assertEqual(sorted(self.room.occupants), ["Jules", "Juliet", "Romeo"])
        self.assertEqual(list(self.room.occupants["Juliet"].sessions), [JULIET])
        self.assertEqual(list(self.room.occupants["Jules"].sessions), [JULIET2])
        self.assertIs(self.room.sessions[JULIET2], self.room.occupants["Jules"])
        # groupchat from the moved session comes from its new nick
        self.h.send(JULIET2, f"<message type='groupchat' to='{ROOM}'><body>hi</body></message>")
        self.assertEqual(self.h.take(ROMEO)[0]["from"], f"{ROOM}/Jules")

    def test_merge_back_into_own_nick(self):
        self.h.send(JULIET2, f"<presence to='{ROOM}/Jules'/>")
        self.h.clear()
        self.h.send(JULIET2, f"<presence to='{ROOM}/Juliet'/>")
        moved = self.h.take(JULIET2)
        self.assertEqual(status_codes(moved[0]), ["303", "110"])
        romeo = self.h.take(ROMEO)
        self.assertEqual(
            kinds(romeo),
            [("presence", f"{ROOM}/Jules", "unavailable"), ("presence", f"{ROOM}/Juliet", None)],
        )
        self.assertEqual(sorted(self.room.occupants), ["Juliet", "Romeo"])
        self.assertEqual(sorted(self.room.occupants["Juliet"].sessions), [JULIET, JULIET2])

    def test_conflict_with_another_user(self):
        self.h.send(JULIET2, f"<presence to='{ROOM}/Romeo'/>")
        (error,) = self.h.take(JULIET2)
        self.assertEqual(error_condition(error), "conflict")
        self.assertEqual(sorted(self.room.occupants["Juliet"].sessions), [JULIET, JULIET2])
        self.assertEqual(self.h.take(ROMEO), [])


class NickPreparationTests(unittest.TestCase):
    """Nicks pass resourceprep (RFC 7622 / 3920 profile): jid-malformed otherwise."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")

    def test_bidi_violation_refused(self):
        # a right-to-left character next to a left-to-right one fails the bidi rule
        self.h.send(JULIET, f"<presence to='{ROOM}/\u05d0a'/>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "jid-malformed")
        self.assertEqual(self.h.service.rooms["room"].occupants.keys(), {"Romeo"})

    def test_nick_is_normalised(self):
        # resourceprep maps compatibility characters (NFKC): a fullwidth "Ｊ" is "J"
        stanzas = self.h.join(JULIET, "\uff2aules")
        self.assertIn("Jules", self.h.service.rooms["room"].occupants)
        self.assertEqual(stanzas[1]["from"], f"{ROOM}/Jules")
        # and conflicts are found on the prepared form
        (error,) = self.h.join(NURSE, "Jules")
        self.assertEqual(error_condition(error), "conflict")

    def test_nick_change_to_invalid_nick(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(JULIET, f"<presence to='{ROOM}/\u05d0a'/>")
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "jid-malformed")


class AffiliationNoticeTests(unittest.TestCase):
    """Affiliation changes of absent users: a message to the occupants (JIDs per whois)."""

    def test_notice_shows_jid_to_moderators_only(self):
        h = MUCHarness(self)
        h.create(ROMEO, "Romeo")
        h.join(JULIET, "Juliet")
        h.clear()
        h.send(
            ROMEO,
            f"<iq type='set' id='b' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            "<item jid='tybalt@localhost' affiliation='outcast'><reason>feud</reason></item>"
            "</query></iq>",
        )
        romeo = [s for s in h.take(ROMEO) if s.name == "message"]
        self.assertEqual(item_of(romeo[0])["jid"], "tybalt@localhost")
        self.assertEqual(item_of(romeo[0])["affiliation"], "outcast")
        self.assertEqual(romeo[0]["from"], ROOM)
        # a semi-anonymous room: those who may not see real JIDs get nothing
        self.assertEqual(h.take(JULIET), [])
