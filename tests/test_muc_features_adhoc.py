"""xmppd.muc.features.adhoc: the destroy-room command (XEP-0050) for service administrators."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import MUC, NS_X_DATA, ROMEO, ROOM, MUCHarness, error_condition

ITEMS = "http://jabber.org/protocol/disco#items"
COMMANDS = "http://jabber.org/protocol/commands"
BOSS = "boss@localhost/b"


class AdminCommandTests(unittest.TestCase):
    """XEP-0050 destroy-room command for service administrators."""

    def setUp(self):
        self.h = MUCHarness(self, admins=("boss@localhost",))
        self.h.create(ROMEO, "Romeo")

    def command(self, who, inner="", action="execute"):
        self.h.send(
            who,
            f"<iq type='set' id='c' to='{MUC}'><command xmlns='{COMMANDS}' node='destroy-room'"
            f" action='{action}'>{inner}</command></iq>",
        )
        return self.h.take(who)

    def test_commands_listed_for_admins_only(self):
        self.h.send(
            BOSS,
            f"<iq type='get' id='l' to='{MUC}'><query xmlns='{ITEMS}' node='{COMMANDS}'/></iq>",
        )
        (reply,) = self.h.take(BOSS)
        self.assertEqual([i["node"] for i in reply.query.elements()], ["destroy-room"])
        self.h.send(
            ROMEO,
            f"<iq type='get' id='l' to='{MUC}'><query xmlns='{ITEMS}' node='{COMMANDS}'/></iq>",
        )
        (reply,) = self.h.take(ROMEO)
        self.assertEqual(list(reply.query.elements()), [])

    def test_destroy_room(self):
        (reply,) = self.command(BOSS)
        command = reply.firstChildElement()
        self.assertEqual(command["status"], "executing")
        (reply,) = self.command(
            BOSS,
            f"<x xmlns='{NS_X_DATA}' type='submit'><field var='rooms'><value>{ROOM}</value></field>"
            "<field var='reason'><value>closing</value></field></x>",
        )
        self.assertEqual(reply.firstChildElement()["status"], "completed")
        (presence,) = self.h.take(ROMEO)
        self.assertEqual(presence["type"], "unavailable")
        self.assertNotIn("room", self.h.service.rooms)

    def test_non_admin_forbidden(self):
        (reply,) = self.command(ROMEO)
        self.assertEqual(error_condition(reply), "forbidden")

    def test_form_lists_the_rooms(self):
        self.h.create(ROMEO, "Romeo", room="attic")
        (reply,) = self.command(BOSS)
        command = reply.firstChildElement()
        (form,) = command.elements(NS_X_DATA, "x")
        rooms = next(f for f in form.elements(NS_X_DATA, "field") if f["var"] == "rooms")
        options = [str(o.value) for o in rooms.elements(NS_X_DATA, "option")]
        self.assertEqual(options, [f"attic@{MUC}", ROOM])

    def test_cancel(self):
        (reply,) = self.command(BOSS, action="cancel")
        self.assertEqual(reply.firstChildElement()["status"], "canceled")
        self.assertIn("room", self.h.service.rooms)

    def test_unknown_command_and_bad_action(self):
        self.h.send(
            BOSS,
            f"<iq type='set' id='c' to='{MUC}'><command xmlns='{COMMANDS}' node='nope'/></iq>",
        )
        (reply,) = self.h.take(BOSS)
        self.assertEqual(error_condition(reply), "item-not-found")
        (reply,) = self.command(BOSS, action="prev")
        self.assertEqual(error_condition(reply), "bad-request")
        self.assertEqual(reply.error["by"], MUC)

    def test_rooms_elsewhere_are_skipped(self):
        (reply,) = self.command(
            BOSS,
            f"<x xmlns='{NS_X_DATA}' type='submit'><field var='rooms'>"
            f"<value>room@elsewhere.example</value><value>nowhere@{MUC}</value></field></x>",
        )
        note = next(reply.firstChildElement().elements(COMMANDS, "note"))
        self.assertEqual(str(note), "0 room(s) destroyed")
        self.assertIn("room", self.h.service.rooms)
