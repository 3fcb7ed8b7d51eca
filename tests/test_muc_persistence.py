"""Persistent rooms survive a restart of the MUC service (SQLite, migration 2)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    MUC,
    NS_MUC_ADMIN,
    NS_MUC_OWNER,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
)
from xmppd.storage.database import Database
from xmppd.storage.rooms import RoomStore


class PersistenceTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(Path(self.mktemp()) / "xmppd.sqlite")
        self.addCleanup(self.db.close)
        yield self.db.open()

    @defer.inlineCallbacks
    def start(self):
        harness = MUCHarness(self, database=self.db)
        yield harness.service.ready
        return harness

    @defer.inlineCallbacks
    def test_room_survives_restart(self):
        h = yield self.start()
        h.create(
            ROMEO,
            "Romeo",
            fields={
                "muc#roomconfig_persistentroom": "1",
                "muc#roomconfig_roomsecret": "cauldronburn",
                "muc#roomconfig_roomname": "Balcony",
            },
        )
        h.send(
            ROMEO,
            f"<iq type='set' id='m' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            "<item jid='juliet@localhost' affiliation='member'><reason>friend</reason></item>"
            "<item jid='nurse@localhost' affiliation='outcast'><reason>gossip</reason></item>"
            "</query></iq>",
        )
        h.send(ROMEO, f"<message type='groupchat' to='{ROOM}'><subject>Love</subject></message>")
        yield h.stop()

        h2 = yield self.start()
        room = h2.service.rooms["room"]
        self.assertEqual(room.config.password, "cauldronburn")
        self.assertEqual(room.config.name, "Balcony")
        self.assertTrue(room.config.persistent)
        self.assertFalse(room.locked)
        self.assertEqual(room.subject, "Love")
        self.assertEqual(room.affiliations.get("romeo@localhost"), "owner")
        self.assertEqual(room.affiliations.entry("juliet@localhost").reason, "friend")
        self.assertEqual(room.affiliations.entry("nurse@localhost").reason, "gossip")
        (error,) = h2.join(JULIET, "Juliet")
        self.assertEqual(error_condition(error), "not-authorized")
        stanzas = h2.join(JULIET, "Juliet", password="cauldronburn")
        self.assertEqual(stanzas[-1].name, "message")
        self.assertEqual(str(stanzas[-1].subject), "Love")
        (error,) = h2.join(NURSE, "Nurse", password="cauldronburn")
        self.assertEqual(error_condition(error), "forbidden")

    @defer.inlineCallbacks
    def test_temporary_and_destroyed_rooms_are_not_kept(self):
        h = yield self.start()
        h.create(ROMEO, "Romeo", fields={"muc#roomconfig_persistentroom": "1"})
        h.create(ROMEO, "Romeo", room="other", fields={"muc#roomconfig_persistentroom": "1"})
        h.create(ROMEO, "Romeo", room="temp")
        h.configure(ROMEO, fields={"muc#roomconfig_persistentroom": "0"})
        h.send(
            ROMEO,
            f"<iq type='set' id='d' to='other@{MUC}'><query xmlns='{NS_MUC_OWNER}'><destroy/>"
            "</query></iq>",
        )
        yield h.service.flush()
        records = yield RoomStore(self.db).load(MUC)
        self.assertEqual(records, [])
        yield h.stop()
        h2 = yield self.start()
        self.assertEqual(h2.service.rooms, {})

    @defer.inlineCallbacks
    def test_store_round_trip(self):
        store = RoomStore(self.db)
        record = {
            "config": {"persistent": True, "password": "x"},
            "subject": "s",
            "subject_from": "Romeo",
            "affiliations": [
                ("a@localhost", "owner", None, "A"),
                ("b@localhost", "member", "r", None),
            ],
        }
        yield store.save(MUC, "room", record)
        yield store.save(MUC, "room", record)
        yield store.save("other.localhost", "room", record)
        (loaded,) = yield store.load(MUC)
        self.assertEqual(loaded.name, "room")
        self.assertEqual(loaded.config["password"], "x")
        self.assertEqual(loaded.subject_from, "Romeo")
        self.assertEqual(len(loaded.affiliations), 2)
        yield store.delete(MUC, "room")
        self.assertEqual((yield store.load(MUC)), [])
        rows = yield self.db.query("SELECT COUNT(*) FROM muc_affiliations WHERE service = ?", MUC)
        self.assertEqual(rows[0][0], 0)
        self.assertEqual(len((yield store.load("other.localhost"))), 1)

    @defer.inlineCallbacks
    def test_stanzas_wait_for_loading(self):
        store = RoomStore(self.db)
        yield store.save(
            MUC,
            "room",
            {
                "config": {"persistent": True},
                "affiliations": [("romeo@localhost", "owner", None, None)],
            },
        )
        h = MUCHarness(self, database=self.db)
        h.send(JULIET, f"<presence to='{ROOM}/Juliet'/>")
        yield h.service.ready
        stanzas = h.take(JULIET)
        self.assertEqual(stanzas[0]["from"], f"{ROOM}/Juliet")
        self.assertNotIn("201", stanzas[0].toXml())
