"""xmppd.muc.host: a room needs nothing of the service but its RoomHost.

A :class:`FakeHost` provides just the RoomHost names (and the MUC modules
over a fake MUCContext); the room is driven directly, without the MUC
service or a router.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid

from tests.muc_fakes import NS_MUC, NS_MUC_OWNER, NS_X_DATA, parse, status_codes
from xmppd.config import MUCSettings
from xmppd.errors import StanzaError
from xmppd.module import ModuleHost
from xmppd.muc.features import MUC_MODULES
from xmppd.muc.host import MUCContext
from xmppd.muc.room import Room
from xmppd.ratelimit import TokenBucket

DOMAIN = "rooms.example"
ROMEO = jid.JID("romeo@example/r")
JULIET = jid.JID("juliet@example/j")


class FakeHost:
    """The RoomHost interface, recording what the room asks of the service."""

    def __init__(self):
        self.domain = DOMAIN
        self.clock = task.Clock()
        self.sent = []
        self.calls = []
        self.rooms = {}
        context = MUCContext(DOMAIN, self.clock, self.rooms, self.is_admin, None,
                             lambda *args: None)
        self.modules = ModuleHost(context, MUC_MODULES, lambda cls: MUCSettings(domain=DOMAIN))
        context.modules = self.modules

    def send(self, stanza):
        self.sent.append(stanza)

    def is_admin(self, bare):
        return bare == "boss@example"

    def message_bucket(self):
        return TokenBucket(5, 20, self.clock)

    def room_changed(self, room):
        self.calls.append(("changed", room.name))

    def room_configured(self, room, old):
        self.calls.append(("configured", room.name))

    def room_emptied(self, room):
        self.calls.append(("emptied", room.name))

    def room_destroyed(self, room):
        self.calls.append(("destroyed", room.name))

    def take(self, to):
        taken = [s for s in self.sent if s.getAttribute("to") == to]
        self.sent = [s for s in self.sent if s.getAttribute("to") != to]
        return taken


def presence(to, extra=""):
    return parse(f"<presence to='{to}'><x xmlns='{NS_MUC}'>{extra}</x></presence>")


class RoomWithFakeHostTests(unittest.TestCase):
    def setUp(self):
        self.host = FakeHost()
        self.room = Room(self.host, "den", locked=True)
        self.host.rooms["den"] = self.room
        self.room.affiliations.set(ROMEO.userhost(), "owner")

    def test_create_configure_and_leave(self):
        self.room.join(presence(f"den@{DOMAIN}/Romeo"), ROMEO, "Romeo", created=True)
        own, subject = self.host.take(ROMEO.full())
        self.assertEqual(status_codes(own), ["201", "110"])
        self.assertEqual(subject.name, "message")
        iq = parse(
            f"<iq type='set' id='c' to='den@{DOMAIN}'><query xmlns='{NS_MUC_OWNER}'>"
            f"<x xmlns='{NS_X_DATA}' type='submit'><field var='muc#roomconfig_roomname'>"
            "<value>Den</value></field></x></query></iq>"
        )
        iq["from"] = ROMEO.full()
        self.room.handle_iq(iq, ROMEO, None)
        result, announcement = self.host.take(ROMEO.full())
        self.assertEqual((result.name, result["type"]), ("iq", "result"))
        self.assertEqual(status_codes(announcement), ["104"])
        self.assertFalse(self.room.locked)
        self.assertEqual(self.host.calls, [("configured", "den")])
        self.room.handle_presence(
            parse(f"<presence type='unavailable' to='den@{DOMAIN}/Romeo'/>"), ROMEO, "Romeo"
        )
        self.assertEqual(self.host.calls[-1], ("emptied", "den"))

    def test_admins_are_owners_and_the_password_module_guards_the_door(self):
        self.assertEqual(self.room.affiliation_of("boss@example"), "owner")
        self.room.locked = False
        self.room.config = self.room.config.replace(password="pw")
        exc = self.assertRaises(
            StanzaError, self.room.join, presence(f"den@{DOMAIN}/Juliet"), JULIET, "Juliet"
        )
        self.assertEqual(exc.condition, "not-authorized")
        self.room.join(presence(f"den@{DOMAIN}/Juliet", "<password>pw</password>"), JULIET,
                       "Juliet")
        self.assertIn("Juliet", self.room.occupants)

    def test_destroy_tells_the_host(self):
        self.room.join(presence(f"den@{DOMAIN}/Romeo"), ROMEO, "Romeo", created=True)
        self.host.sent.clear()
        self.room.destroy(reason="closing")
        (gone,) = self.host.take(ROMEO.full())
        self.assertEqual(gone["type"], "unavailable")
        self.assertEqual(self.host.calls, [("destroyed", "den")])
        self.assertTrue(self.room.destroyed)
