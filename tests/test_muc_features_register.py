"""xmppd.muc.features.register: reserving a nick with a room (muc#register)."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NS_X_DATA,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    kinds,
    status_codes,
)


class RegistrationTests(unittest.TestCase):
    """Reserved nicks (muc#register) at nick change; deregistration ends membership."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.room = self.h.service.rooms["room"]

    def register(self, who, nick):
        self.h.send(
            who,
            f"<iq type='set' id='r' to='{ROOM}'><query xmlns='jabber:iq:register'>"
            f"<x xmlns='{NS_X_DATA}' type='submit'><field var='FORM_TYPE'>"
            "<value>http://jabber.org/protocol/muc#register</value></field>"
            f"<field var='muc#register_roomnick'><value>{nick}</value></field></x></query></iq>",
        )
        return self.h.take(who)

    def test_reserved_nick_refused_at_nick_change(self):
        self.register(JULIET, "Jules")
        self.h.join(NURSE, "Nurse")
        self.h.clear()
        self.h.send(NURSE, f"<presence to='{ROOM}/Jules'/>")
        (error,) = self.h.take(NURSE)
        self.assertEqual(error_condition(error), "conflict")
        self.assertIn("Nurse", self.room.occupants)
        # the owner of the nick may take it
        self.h.join(JULIET, "Juliet")
        self.h.send(JULIET, f"<presence to='{ROOM}/Jules'/>")
        self.assertIn("Jules", self.room.occupants)

    def test_registered_nick_taken_by_someone_else_is_refused(self):
        self.h.join(NURSE, "Nurse")
        (reply,) = self.register(JULIET, "Nurse")
        self.assertEqual(error_condition(reply), "conflict")

    def test_deregistration_removes_member_from_members_only_room(self):
        self.register(JULIET, "Jules")
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.h.join(JULIET, "Jules")
        self.h.clear()
        self.h.send(
            JULIET,
            f"<iq type='set' id='u' to='{ROOM}'><query xmlns='jabber:iq:register'><remove/>"
            "</query></iq>",
        )
        juliet = self.h.take(JULIET)
        self.assertEqual(juliet[0]["type"], "result")
        self.assertEqual(juliet[1]["type"], "unavailable")
        self.assertEqual(status_codes(juliet[1]), ["321", "110"])
        romeo = self.h.take(ROMEO)
        self.assertEqual(status_codes(romeo[0]), ["321"])
        self.assertNotIn("Jules", self.room.occupants)
        (error,) = self.h.join(JULIET, "Jules")
        self.assertEqual(error_condition(error), "registration-required")

    def test_registration_form_and_registered_answer(self):
        self.h.send(
            JULIET, f"<iq type='get' id='f' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>"
        )
        (reply,) = self.h.take(JULIET)
        fields = [f.getAttribute("var") for f in reply.query.x.elements(NS_X_DATA, "field")]
        self.assertIn("muc#register_roomnick", fields)
        self.assertNotIn("registered", [c.name for c in reply.query.elements()])
        self.register(JULIET, "Jules")
        self.h.send(
            JULIET, f"<iq type='get' id='f' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>"
        )
        (reply,) = self.h.take(JULIET)
        self.assertEqual([c.name for c in reply.query.elements()][:2], ["registered", "username"])
        self.assertEqual(str(reply.query.username), "Jules")

    def test_result_before_the_membership_change(self):
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        got = self.register(JULIET, "Jules")
        self.assertEqual(kinds(got), [("iq", ROOM, "result"), ("presence", f"{ROOM}/Juliet", None)])
        self.assertEqual(self.room.affiliations.get("juliet@localhost"), "member")

    def test_refusals(self):
        self.room.affiliations.set("nurse@localhost", "outcast")
        (reply,) = self.register(NURSE, "Nursie")
        self.assertEqual(error_condition(reply), "forbidden")
        self.h.send(
            JULIET, f"<iq type='set' id='r' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>"
        )
        (reply,) = self.h.take(JULIET)
        self.assertEqual(error_condition(reply), "bad-request")
        (reply,) = self.register(JULIET, " ")
        self.assertEqual(error_condition(reply), "not-acceptable")
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        self.h.clear()
        (reply,) = self.register(JULIET, "Jules")
        self.assertEqual(error_condition(reply), "registration-required")
        self.assertIsNone(self.room.affiliations.nick_owner("Jules"))

    def test_cancel_and_removal_without_registration(self):
        self.h.send(
            JULIET,
            f"<iq type='set' id='c' to='{ROOM}'><query xmlns='jabber:iq:register'>"
            f"<x xmlns='{NS_X_DATA}' type='cancel'/></query></iq>",
        )
        (reply,) = self.h.take(JULIET)
        self.assertEqual(reply["type"], "result")
        self.h.send(
            JULIET,
            f"<iq type='set' id='u' to='{ROOM}'><query xmlns='jabber:iq:register'><remove/>"
            "</query></iq>",
        )
        (reply,) = self.h.take(JULIET)
        self.assertEqual(reply["type"], "result")
        self.assertIsNone(self.room.affiliations.entry("juliet@localhost"))
