"""Service discovery of the MUC service and its rooms."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import JULIET, MUC, NS_X_DATA, ROMEO, ROOM, MUCHarness, error_condition

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"


class DiscoTests(unittest.TestCase):
    def setUp(self):
        self.h = MUCHarness(self)

    def query(self, who, to, ns, node=None):
        node_attr = f" node='{node}'" if node else ""
        self.h.send(who, f"<iq type='get' id='q' to='{to}'><query xmlns='{ns}'{node_attr}/></iq>")
        (reply,) = self.h.take(who)
        return reply

    def features(self, reply):
        return {f["var"] for f in reply.query.elements(INFO, "feature")}

    def test_service_info(self):
        reply = self.query(ROMEO, MUC, INFO)
        identity = next(reply.query.elements(INFO, "identity"))
        self.assertEqual((identity["category"], identity["type"]), ("conference", "text"))
        self.assertIn("http://jabber.org/protocol/muc", self.features(reply))

    def test_service_items_lists_public_rooms(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_roomname": "The Balcony"})
        self.h.create(ROMEO, "Romeo", room="hidden", fields={"muc#roomconfig_publicroom": "0"})
        self.h.join(ROMEO, "Romeo", room="locked")
        reply = self.query(JULIET, MUC, ITEMS)
        items = [(i["jid"], i.getAttribute("name")) for i in reply.query.elements()]
        self.assertEqual(items, [(ROOM, "The Balcony")])

    def test_room_info(self):
        self.h.create(
            ROMEO,
            "Romeo",
            fields={
                "muc#roomconfig_roomname": "The Balcony",
                "muc#roomconfig_roomsecret": "pw",
                "muc#roomconfig_roomdesc": "Wherefore",
            },
        )
        reply = self.query(JULIET, ROOM, INFO)
        identity = next(reply.query.elements(INFO, "identity"))
        self.assertEqual(identity["name"], "The Balcony")
        features = self.features(reply)
        for feature in (
            "http://jabber.org/protocol/muc",
            "muc_passwordprotected",
            "muc_open",
            "muc_unmoderated",
            "muc_temporary",
            "muc_public",
            "muc_semianonymous",
        ):
            self.assertIn(feature, features)
        form = next(reply.query.elements(NS_X_DATA, "x"))
        values = {
            f["var"]: [str(v) for v in f.elements(NS_X_DATA, "value")]
            for f in form.elements(NS_X_DATA, "field")
        }
        self.assertEqual(values["FORM_TYPE"], ["http://jabber.org/protocol/muc#roominfo"])
        self.assertEqual(values["muc#roominfo_occupants"], ["1"])
        self.assertEqual(values["muc#roominfo_description"], ["Wherefore"])
        self.h.configure(
            ROMEO,
            fields={
                "muc#roomconfig_roomsecret": "",
                "muc#roomconfig_membersonly": "1",
                "muc#roomconfig_moderatedroom": "1",
                "muc#roomconfig_persistentroom": "1",
                "muc#roomconfig_publicroom": "0",
                "muc#roomconfig_whois": "anyone",
            },
        )
        features = self.features(self.query(JULIET, ROOM, INFO))
        for feature in (
            "muc_unsecured",
            "muc_membersonly",
            "muc_moderated",
            "muc_persistent",
            "muc_hidden",
            "muc_nonanonymous",
        ):
            self.assertIn(feature, features)

    def test_room_items(self):
        self.h.create(ROMEO, "Romeo")
        reply = self.query(JULIET, ROOM, ITEMS)
        self.assertEqual([i["jid"] for i in reply.query.elements()], [f"{ROOM}/Romeo"])
        self.h.configure(ROMEO, fields={"muc#roomconfig_publicroom": "0"})
        self.h.clear()
        reply = self.query(JULIET, ROOM, ITEMS)
        self.assertEqual(list(reply.query.elements()), [])
        reply = self.query(ROMEO, ROOM, ITEMS)
        self.assertEqual(len(list(reply.query.elements())), 1)

    def test_unknown_and_locked_rooms(self):
        reply = self.query(JULIET, f"nowhere@{MUC}", INFO)
        self.assertEqual(error_condition(reply), "item-not-found")
        self.h.join(ROMEO, "Romeo")
        self.h.clear()
        reply = self.query(JULIET, ROOM, INFO)
        self.assertEqual(error_condition(reply), "item-not-found")

    def test_unknown_iq_to_service(self):
        self.h.send(
            ROMEO, f"<iq type='get' id='v' to='{MUC}'><query xmlns='jabber:iq:version'/></iq>"
        )
        (reply,) = self.h.take(ROMEO)
        self.assertEqual(error_condition(reply), "service-unavailable")
