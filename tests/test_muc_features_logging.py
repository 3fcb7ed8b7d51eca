"""xmppd.muc.features.logging: rooms with logging on record their conversation."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.muc_fakes import JULIET, MUC, ROMEO, ROOM, MUCHarness, muc_user_x
from xmppd.storage.database import Database
from xmppd.storage.rooms import RoomStore


class ConversationLogTests(unittest.TestCase):
    """A room with logging enabled records its conversation (migration 3)."""

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(Path(self.mktemp()) / "xmppd.sqlite")
        self.addCleanup(self.db.close)
        yield self.db.open()
        self.h = MUCHarness(self, database=self.db)
        yield self.h.service.ready

    def say(self, who, body):
        self.h.send(who, f"<message type='groupchat' to='{ROOM}'><body>{body}</body></message>")

    @defer.inlineCallbacks
    def test_logged_while_enabled_only(self):
        h = self.h
        h.create(ROMEO, "Romeo")
        h.join(JULIET, "Juliet")
        self.say(JULIET, "before logging")
        replies = h.configure(ROMEO, fields={"muc#roomconfig_enablelogging": "1"})
        self.assertIn("result", [s.getAttribute("type") for s in replies if s.name == "iq"])
        self.say(JULIET, "hello")
        h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>Plans</subject></message>")
        h.configure(ROMEO, fields={"muc#roomconfig_enablelogging": "0"})
        self.say(JULIET, "off the record")
        yield h.service.flush()

        rows = yield RoomStore(self.db).read_log(MUC, "room")
        self.assertEqual([nick for _, nick, _ in rows], ["Juliet", "Romeo"])
        stamp, _, first = rows[0]
        self.assertRegex(stamp, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertIn(f"from='{ROOM}/Juliet'", first)
        self.assertIn("<body>hello</body>", first)
        self.assertIn("<subject>Plans</subject>", rows[1][2])
        everything = "".join(stanza for _, _, stanza in rows)
        self.assertNotIn("before logging", everything)
        self.assertNotIn("off the record", everything)

    @defer.inlineCallbacks
    def test_joiners_are_told_the_room_is_logged(self):
        h = self.h
        h.create(ROMEO, "Romeo", fields={"muc#roomconfig_enablelogging": "1"})
        stanzas = h.join(JULIET, "Juliet")
        own = [s for s in stanzas if s.name == "presence" and s["from"] == f"{ROOM}/Juliet"]
        codes = [c["code"] for c in muc_user_x(own[0]).elements() if c.name == "status"]
        self.assertIn("170", codes)
        yield h.service.flush()


class WithoutDatabaseTests(unittest.TestCase):
    def test_nothing_is_written_and_nothing_breaks(self):
        h = MUCHarness(self)
        h.create(ROMEO, "Romeo", fields={"muc#roomconfig_enablelogging": "1"})
        h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><body>hi</body></message>")
        (echo,) = h.take(ROMEO)
        self.assertEqual(str(echo.body), "hi")
