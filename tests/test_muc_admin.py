"""Roles and affiliations (muc#admin) and the privilege rules behind them."""

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
    status_codes,
)
from xmppd.errors import StanzaError
from xmppd.muc import affiliations as aff


class PrivilegeRuleTests(unittest.TestCase):
    """The pure rules of XEP-0045 sections 8-10."""

    def assertRefused(self, condition, function, *args):
        exc = self.assertRaises(StanzaError, function, *args)
        self.assertEqual(exc.condition, condition)

    def test_affiliation_rules(self):
        check = aff.check_affiliation_change
        check("owner", "owner", "none")
        check("owner", "none", "admin")
        check("admin", "none", "member")
        check("admin", "member", "outcast")
        self.assertRefused("forbidden", check, "admin", "none", "admin")
        self.assertRefused("forbidden", check, "admin", "member", "owner")
        self.assertRefused("not-allowed", check, "admin", "admin", "none")
        self.assertRefused("not-allowed", check, "admin", "owner", "outcast")
        self.assertRefused("forbidden", check, "member", "none", "member")
        self.assertRefused("forbidden", check, "none", "none", "outcast")
        self.assertRefused("bad-request", check, "owner", "none", "king")

    def test_role_rules(self):
        check = aff.check_role_change
        check("moderator", "none", "participant", "none", "none")
        check("moderator", "member", "participant", "member", "visitor")
        check("moderator", "admin", "participant", "member", "moderator")
        check("moderator", "owner", "moderator", "none", "participant")
        self.assertRefused("forbidden", check, "participant", "member", "visitor", "none", "none")
        self.assertRefused("not-allowed", check, "moderator", "owner", "moderator", "admin", "none")
        self.assertRefused(
            "not-allowed", check, "moderator", "none", "moderator", "owner", "visitor"
        )
        self.assertRefused(
            "forbidden", check, "moderator", "member", "participant", "none", "moderator"
        )
        self.assertRefused(
            "forbidden", check, "moderator", "none", "moderator", "none", "participant"
        )
        self.assertRefused("bad-request", check, "moderator", "owner", "visitor", "none", "jester")

    def test_default_roles(self):
        self.assertEqual(aff.default_role("owner", False), "moderator")
        self.assertEqual(aff.default_role("admin", True), "moderator")
        self.assertEqual(aff.default_role("member", True), "participant")
        self.assertEqual(aff.default_role("none", True), "visitor")
        self.assertEqual(aff.default_role("none", False), "participant")


class AdminTests(unittest.TestCase):
    """muc#admin requests through the router."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.join(NURSE, "Nurse")
        self.h.clear()

    def admin(self, who, items, kind="set", iq_id="a"):
        self.h.send(
            who,
            f"<iq type='{kind}' id='{iq_id}' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            f"{items}</query></iq>",
        )
        return self.h.take(who)

    def reply(self, stanzas):
        return [s for s in stanzas if s.name == "iq"][0]

    def test_kick(self):
        got = self.admin(ROMEO, "<item nick='Nurse' role='none'><reason>out</reason></item>")
        self.assertEqual(self.reply(got)["type"], "result")
        nurse = self.h.take(NURSE)
        self.assertEqual(nurse[0]["type"], "unavailable")
        self.assertEqual(status_codes(nurse[0]), ["307", "110"])
        item = item_of(nurse[0])
        self.assertEqual(item["role"], "none")
        self.assertEqual(
            str(next(item.elements(NS_MUC_ADMIN.replace("admin", "user"), "reason"))), "out"
        )
        juliet = self.h.take(JULIET)
        self.assertEqual(status_codes(juliet[0]), ["307"])
        self.assertNotIn("Nurse", self.h.service.rooms["room"].occupants)

    def test_participant_cannot_kick(self):
        got = self.admin(JULIET, "<item nick='Nurse' role='none'/>")
        self.assertEqual(error_condition(self.reply(got)), "forbidden")

    def test_nobody_kicks_an_owner(self):
        self.admin(ROMEO, "<item nick='Juliet' role='moderator'/>")
        self.h.clear()
        got = self.admin(JULIET, "<item nick='Romeo' role='none'/>")
        self.assertEqual(error_condition(self.reply(got)), "not-allowed")
        self.assertEqual(got[0].error["code"], "405")

    def test_unknown_nick(self):
        got = self.admin(ROMEO, "<item nick='Ghost' role='none'/>")
        self.assertEqual(error_condition(self.reply(got)), "item-not-found")

    def test_ban_and_outcast_list(self):
        got = self.admin(
            ROMEO, "<item jid='nurse@localhost' affiliation='outcast'><reason>spy</reason></item>"
        )
        self.assertEqual(self.reply(got)["type"], "result")
        nurse = self.h.take(NURSE)
        self.assertEqual(status_codes(nurse[0]), ["301", "110"])
        self.assertEqual(item_of(nurse[0])["affiliation"], "outcast")
        (error,) = self.h.join(NURSE, "Nurse")
        self.assertEqual(error_condition(error), "forbidden")
        self.assertEqual(error.error["code"], "403")
        got = self.admin(ROMEO, "<item affiliation='outcast'/>", kind="get")
        items = list(got[0].query.elements())
        self.assertEqual(items[0]["jid"], "nurse@localhost")
        self.assertEqual(str(items[0].reason), "spy")

    def test_member_grant_and_list(self):
        self.admin(ROMEO, "<item jid='juliet@localhost' affiliation='member'/>")
        juliet = self.h.take(JULIET)
        self.assertEqual(item_of(juliet[0])["affiliation"], "member")
        got = self.admin(ROMEO, "<item affiliation='member'/>", kind="get")
        self.assertEqual([i["jid"] for i in got[0].query.elements()], ["juliet@localhost"])
        # participants may not read lists in semi-anonymous rooms
        got = self.admin(NURSE, "<item affiliation='member'/>", kind="get")
        self.assertEqual(error_condition(self.reply(got)), "forbidden")
        # members may in non-anonymous rooms
        self.h.configure(ROMEO, fields={"muc#roomconfig_whois": "anyone"})
        got = self.admin(JULIET, "<item affiliation='member'/>", kind="get")
        self.assertEqual(self.reply(got)["type"], "result")

    def test_members_only(self):
        self.admin(ROMEO, "<item jid='juliet@localhost' affiliation='member'/>")
        self.h.clear()
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1"})
        nurse = [p for p in self.h.take(NURSE) if p.name == "presence"]
        self.assertEqual(nurse[0]["type"], "unavailable")
        self.assertEqual(status_codes(nurse[0]), ["322", "110"])
        (error,) = self.h.join(NURSE, "Nurse")
        self.assertEqual(error_condition(error), "registration-required")
        self.assertEqual(error.error["code"], "407")
        self.h.clear()
        self.admin(ROMEO, "<item jid='juliet@localhost' affiliation='none'/>")
        juliet = self.h.take(JULIET)
        self.assertEqual(status_codes(juliet[0]), ["321", "110"])

    def test_last_owner(self):
        got = self.admin(ROMEO, "<item jid='romeo@localhost' affiliation='admin'/>")
        self.assertEqual(error_condition(self.reply(got)), "conflict")
        self.admin(ROMEO, "<item jid='juliet@localhost' affiliation='owner'/>")
        got = self.admin(ROMEO, "<item jid='romeo@localhost' affiliation='admin'/>")
        self.assertEqual(self.reply(got)["type"], "result")

    def test_admin_limits(self):
        self.admin(ROMEO, "<item jid='juliet@localhost' affiliation='admin'/>")
        self.h.clear()
        got = self.admin(JULIET, "<item jid='nurse@localhost' affiliation='owner'/>")
        self.assertEqual(error_condition(self.reply(got)), "forbidden")
        got = self.admin(JULIET, "<item jid='romeo@localhost' affiliation='outcast'/>")
        self.assertEqual(error_condition(self.reply(got)), "not-allowed")
        got = self.admin(JULIET, "<item jid='nurse@localhost' affiliation='member'/>")
        self.assertEqual(self.reply(got)["type"], "result")
        got = self.admin(NURSE, "<item jid='tybalt@localhost' affiliation='member'/>")
        self.assertEqual(error_condition(self.reply(got)), "forbidden")

    def test_voice_and_moderator(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_moderatedroom": "1"})
        self.h.join(TYBALT, "Tybalt")
        self.h.clear()
        self.admin(ROMEO, "<item nick='Tybalt' role='participant'/>")
        self.assertEqual(item_of(self.h.take(TYBALT)[0])["role"], "participant")
        self.h.clear()
        self.admin(ROMEO, "<item nick='Tybalt' role='visitor'/>")
        self.assertEqual(item_of(self.h.take(TYBALT)[0])["role"], "visitor")
        self.h.clear()
        self.admin(ROMEO, "<item nick='Juliet' role='moderator'/>")
        self.assertEqual(item_of(self.h.take(JULIET)[0])["role"], "moderator")
        got = self.admin(JULIET, "<item nick='Tybalt' role='participant'/>")
        self.assertEqual(self.reply(got)["type"], "result")
        got = self.admin(JULIET, "<item nick='Nurse' role='moderator'/>")
        self.assertEqual(error_condition(self.reply(got)), "forbidden")
        got = self.admin(JULIET, "<item role='moderator'/>", kind="get")
        self.assertEqual(sorted(i["nick"] for i in got[0].query.elements()), ["Juliet", "Romeo"])

    def test_absent_user_affiliation_announced(self):
        got = self.admin(ROMEO, "<item jid='tybalt@localhost' affiliation='member'/>")
        # the moderator is told, with the bare JID, before the result
        self.assertEqual([s.name for s in got], ["message", "iq"])
        self.assertEqual(item_of(got[0])["jid"], "tybalt@localhost")
        self.assertEqual(item_of(got[0])["affiliation"], "member")
        # a participant of this semi-anonymous room may not see JIDs: nothing
        self.assertEqual(self.h.take(JULIET), [])

    def test_bad_requests(self):
        for items in ("", "<item nick='Nurse'/>", "<item jid='@@' affiliation='member'/>"):
            got = self.admin(ROMEO, items)
            self.assertIn(error_condition(self.reply(got)), ("bad-request", "jid-malformed"), items)

    def test_nick_registration(self):
        from tests.muc_fakes import NS_X_DATA

        self.h.send(
            JULIET,
            f"<iq type='set' id='r' to='{ROOM}'><query xmlns='jabber:iq:register'>"
            f"<x xmlns='{NS_X_DATA}' type='submit'><field var='FORM_TYPE'>"
            "<value>http://jabber.org/protocol/muc#register</value></field>"
            "<field var='muc#register_roomnick'><value>Jules</value></field></x></query></iq>",
        )
        got = self.h.take(JULIET)
        self.assertIn("result", [s.getAttribute("type") for s in got if s.name == "iq"])
        room = self.h.service.rooms["room"]
        self.assertEqual(room.affiliations.get("juliet@localhost"), "member")
        self.assertEqual(room.affiliations.nick_owner("Jules"), "juliet@localhost")
        (error,) = self.h.join(TYBALT, "Jules")
        self.assertEqual(error_condition(error), "conflict")
        self.h.send(
            JULIET,
            f"<iq type='set' id='u' to='{ROOM}'><query xmlns='jabber:iq:register'><remove/>"
            "</query></iq>",
        )
        self.h.take(JULIET)
        self.assertEqual(room.affiliations.get("juliet@localhost"), "none")
        self.assertIsNone(room.affiliations.nick_owner("Jules"))
