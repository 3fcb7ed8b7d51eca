"""xmppd.muc.features.admin: muc#admin lists and changes."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NS_MUC_ADMIN,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    kinds,
)


class ListReadingTests(unittest.TestCase):
    """Who may read which affiliation list (Prosody's rules, XEP-0045 9.5, 10.5)."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        room = self.h.service.rooms["room"]
        room.affiliations.set("juliet@localhost", "admin")
        room.affiliations.set("nurse@localhost", "member")
        room.affiliations.set("tybalt@localhost", "outcast", "feud")

    def read(self, who, affiliation):
        self.h.send(
            who,
            f"<iq type='get' id='l' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            f"<item affiliation='{affiliation}'/></query></iq>",
        )
        (reply,) = self.h.take(who)
        if reply["type"] == "error":
            return error_condition(reply)
        return [i["jid"] for i in reply.query.elements(NS_MUC_ADMIN, "item")]

    def test_who_reads_what(self):
        lists = ("owner", "admin", "member", "outcast")
        expected = {
            ROMEO: (
                ["romeo@localhost"],
                ["juliet@localhost"],
                ["nurse@localhost"],
                ["tybalt@localhost"],
            ),
            JULIET: ("forbidden", ["juliet@localhost"], ["nurse@localhost"], ["tybalt@localhost"]),
            NURSE: ("forbidden",) * 4,
            "paris@localhost/p": ("forbidden",) * 4,
        }
        for who, wanted in expected.items():
            self.assertEqual(tuple(self.read(who, a) for a in lists), wanted, who)
        # in a non-anonymous room members see who belongs (not the outcasts)
        self.h.configure(ROMEO, fields={"muc#roomconfig_whois": "anyone"})
        got = tuple(self.read(NURSE, a) for a in lists)
        self.assertEqual(
            got,
            (["romeo@localhost"], ["juliet@localhost"], ["nurse@localhost"], "forbidden"),
        )
        self.assertEqual(self.read("paris@localhost/p", "member"), "forbidden")


class ChangeTests(unittest.TestCase):
    """Changes are checked together, answered, then made."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.join(NURSE, "Nurse")
        self.h.clear()
        self.room = self.h.service.rooms["room"]

    def admin(self, who, items, kind="set"):
        self.h.send(
            who,
            f"<iq type='{kind}' id='a' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            f"{items}</query></iq>",
        )
        return self.h.take(who)

    def test_result_comes_before_the_presence_changes(self):
        got = self.admin(ROMEO, "<item nick='Nurse' role='visitor'/>")
        self.assertEqual(
            kinds(got), [("iq", ROOM, "result"), ("presence", f"{ROOM}/Nurse", None)]
        )

    def test_one_bad_item_refuses_the_whole_request(self):
        got = self.admin(
            ROMEO,
            "<item jid='paris@localhost' affiliation='member'/>"
            "<item nick='Ghost' role='none'/>",
        )
        self.assertEqual(error_condition(got[0]), "item-not-found")
        self.assertEqual(len(got), 1)
        self.assertEqual(self.room.affiliations.get("paris@localhost"), "none")

    def test_role_list(self):
        got = self.admin(ROMEO, "<item role='participant'/>", kind="get")
        items = [(i["nick"], i["role"], i["jid"]) for i in got[0].query.elements()]
        self.assertEqual(
            items, [("Juliet", "participant", JULIET), ("Nurse", "participant", NURSE)]
        )
        got = self.admin(JULIET, "<item role='participant'/>", kind="get")
        self.assertEqual(error_condition(got[0]), "forbidden")
        got = self.admin(ROMEO, "<item role='king'/>", kind="get")
        self.assertEqual(error_condition(got[0]), "bad-request")

    def test_affiliation_by_nick(self):
        got = self.admin(ROMEO, "<item nick='Juliet' affiliation='member'/>")
        self.assertEqual(got[0]["type"], "result")
        self.assertEqual(self.room.affiliations.get("juliet@localhost"), "member")
        got = self.admin(ROMEO, "<item nick='Ghost' affiliation='member'/>")
        self.assertEqual(error_condition(got[0]), "bad-request")
