"""xmppd.muc.features.admin: muc#admin lists and changes."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NS_MUC_ADMIN,
    NS_MUC_USER,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    kinds,
)
from xmppd.storage.database import Database


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


class AbsentUserNoticeTests(unittest.TestCase):
    """Affiliation changes of users not in the room: the notice to the occupants."""

    def setUp(self):
        self.h = MUCHarness(self)

    def create(self, **fields):
        self.h.create(ROMEO, "Romeo", fields=fields or None)
        self.h.join(JULIET, "Juliet")
        self.h.clear()

    def change(self, item):
        self.h.send(
            ROMEO,
            f"<iq type='set' id='c' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>{item}</query></iq>",
        )
        return self.h.take(ROMEO)

    def x_of(self, message):
        (x,) = message.elements(NS_MUC_USER, "x")
        return x

    def layout(self, message):
        return [
            f"status:{e['code']}" if e.name == "status" else e.name
            for e in self.x_of(message).elements()
        ]

    def item(self, message):
        (item,) = self.x_of(message).elements(NS_MUC_USER, "item")
        return item

    def test_notice_before_the_result_without_role(self):
        self.create()
        got = self.change("<item jid='tybalt@localhost' affiliation='member'/>")
        self.assertEqual(kinds(got), [("message", ROOM, None), ("iq", ROOM, "result")])
        item = self.item(got[0])
        self.assertEqual(
            dict(item.attributes), {"jid": "tybalt@localhost", "affiliation": "member"}
        )
        self.assertEqual(self.layout(got[0]), ["item"])

    def test_role_never_appears(self):
        self.create(**{"muc#roomconfig_whois": "anyone"})
        for affiliation in ("member", "admin", "owner", "none", "outcast"):
            got = self.change(f"<item jid='tybalt@localhost' affiliation='{affiliation}'/>")
            self.assertNotIn("role", self.item(got[0]).attributes, affiliation)
            (notice,) = self.h.take(JULIET)
            self.assertNotIn("role", self.item(notice).attributes, affiliation)

    def test_ban_carries_301_before_the_item_and_the_reason_inside(self):
        self.create()
        got = self.change(
            "<item jid='tybalt@localhost' affiliation='outcast'><reason>feud</reason></item>"
        )
        self.assertEqual(self.layout(got[0]), ["status:301", "item"])
        item = self.item(got[0])
        self.assertEqual(item["affiliation"], "outcast")
        (reason,) = item.elements(NS_MUC_USER, "reason")
        self.assertEqual(str(reason), "feud")

    def test_removal_from_members_only_room_carries_321(self):
        self.create(**{"muc#roomconfig_membersonly": "1"})
        self.change("<item jid='tybalt@localhost' affiliation='member'/>")
        got = self.change("<item jid='tybalt@localhost' affiliation='none'/>")
        self.assertEqual(self.layout(got[0]), ["status:321", "item"])

    def test_semi_anonymous_room_tells_only_those_who_see_jids(self):
        self.create()
        got = self.change("<item jid='tybalt@localhost' affiliation='member'/>")
        self.assertEqual(self.item(got[0])["jid"], "tybalt@localhost")
        self.assertEqual(self.h.take(JULIET), [])

    def test_non_anonymous_room_tells_everyone(self):
        self.create(**{"muc#roomconfig_whois": "anyone"})
        self.change("<item jid='tybalt@localhost' affiliation='member'/>")
        (notice,) = self.h.take(JULIET)
        self.assertEqual(self.item(notice)["jid"], "tybalt@localhost")

    def test_outcast_list_returns_the_reason(self):
        self.create()
        self.change(
            "<item jid='tybalt@localhost' affiliation='outcast'><reason>feud</reason></item>"
        )
        self.h.send(
            ROMEO,
            f"<iq type='get' id='l' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            "<item affiliation='outcast'/></query></iq>",
        )
        (reply,) = self.h.take(ROMEO)
        (item,) = reply.query.elements(NS_MUC_ADMIN, "item")
        self.assertEqual(item["jid"], "tybalt@localhost")
        (reason,) = item.elements(NS_MUC_ADMIN, "reason")
        self.assertEqual(str(reason), "feud")

    def test_occupant_changes_still_follow_the_result(self):
        self.create()
        got = self.change("<item jid='juliet@localhost' affiliation='member'/>")
        self.assertEqual(got[0].name, "iq")


class OutcastReasonRestartTests(unittest.TestCase):
    """A ban's reason is stored with a persistent room and listed after a restart."""

    @defer.inlineCallbacks
    def test_reason_survives_restart(self):
        db = Database(Path(self.mktemp()) / "xmppd.sqlite")
        self.addCleanup(db.close)
        yield db.open()
        h = MUCHarness(self, database=db)
        yield h.service.ready
        h.create(ROMEO, "Romeo", fields={"muc#roomconfig_persistentroom": "1"})
        h.send(
            ROMEO,
            f"<iq type='set' id='b' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            "<item jid='tybalt@localhost' affiliation='outcast'><reason>feud</reason></item>"
            "</query></iq>",
        )
        yield h.stop()
        h2 = MUCHarness(self, database=db)
        yield h2.service.ready
        h2.send(
            ROMEO,
            f"<iq type='get' id='l' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            "<item affiliation='outcast'/></query></iq>",
        )
        (reply,) = h2.take(ROMEO)
        (item,) = reply.query.elements(NS_MUC_ADMIN, "item")
        (reason,) = item.elements(NS_MUC_ADMIN, "reason")
        self.assertEqual(str(reason), "feud")
