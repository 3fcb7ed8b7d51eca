"""xmppd.muc.features.disco: disco of the service and the rooms, computed from the modules."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import JULIET, MUC, ROMEO, ROOM, MUCHarness, error_condition
from xmppd.module import Scope

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
ROOMINFO = "http://jabber.org/protocol/muc#roominfo"


class ModuleDiscoTests(unittest.TestCase):
    def setUp(self):
        self.h = MUCHarness(self)

    def query(self, who, to, ns, node=None):
        node_attr = f" node='{node}'" if node else ""
        self.h.send(who, f"<iq type='get' id='q' to='{to}'><query xmlns='{ns}'{node_attr}/></iq>")
        (reply,) = self.h.take(who)
        return reply

    def features(self, reply):
        return [f["var"] for f in reply.query.elements(INFO, "feature")]

    def test_service_features_are_the_modules_in_order(self):
        reply = self.query(ROMEO, MUC, INFO)
        self.assertEqual(self.features(reply), self.h.service.modules.features(Scope.MUC_SERVICE))
        self.assertEqual(
            self.features(reply),
            [INFO, ITEMS, "http://jabber.org/protocol/muc", "http://jabber.org/protocol/commands"],
        )

    def test_room_features_follow_the_configuration(self):
        self.h.create(ROMEO, "Romeo")
        room = self.h.service.rooms["room"]
        before = self.features(self.query(JULIET, ROOM, INFO))
        self.assertEqual(before, self.h.service.modules.features(Scope.ROOM, room))
        self.assertEqual(
            before,
            [INFO, ITEMS, "jabber:iq:register", "http://jabber.org/protocol/muc",
             "muc_unsecured", "muc_open", "muc_unmoderated", "muc_temporary", "muc_public",
             "muc_semianonymous", "urn:xmpp:sid:0", "urn:xmpp:message-moderate:1",
             "urn:xmpp:message-moderate:0", "urn:xmpp:occupant-id:0"],
        )
        self.h.configure(ROMEO, fields={"muc#roomconfig_membersonly": "1",
                                        "muc#roomconfig_moderatedroom": "1",
                                        "muc#roomconfig_whois": "anyone"})
        after = self.features(self.query(ROMEO, ROOM, INFO))
        self.assertEqual(
            after[4:], ["muc_unsecured", "muc_membersonly", "muc_moderated", "muc_temporary",
                        "muc_public", "muc_nonanonymous", "urn:xmpp:sid:0",
                        "urn:xmpp:message-moderate:1", "urn:xmpp:message-moderate:0",
                        "urn:xmpp:occupant-id:0"],
        )

    def test_roominfo_form_has_the_language_when_set(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_lang": "en"})
        reply = self.query(ROMEO, ROOM, INFO)
        (form,) = reply.query.elements("jabber:x:data", "x")
        fields = {f["var"]: str(f.value) for f in form.elements("jabber:x:data", "field")}
        self.assertEqual(fields["FORM_TYPE"], ROOMINFO)
        self.assertEqual(fields["muc#roominfo_lang"], "en")
        self.assertEqual(fields["muc#roominfo_occupants"], "1")

    def test_roomuser_node_names_the_registered_nick(self):
        self.h.create(ROMEO, "Romeo")
        reply = self.query(JULIET, ROOM, INFO, node="x-roomuser-item")
        self.assertEqual(reply["type"], "result")
        self.assertEqual(list(reply.query.elements(INFO, "identity")), [])
        self.h.service.rooms["room"].affiliations.set_nick("juliet@localhost", "Jules")
        reply = self.query(JULIET, ROOM, INFO, node="x-roomuser-item")
        (identity,) = reply.query.elements(INFO, "identity")
        self.assertEqual(identity["name"], "Jules")

    def test_unknown_nodes(self):
        self.h.create(ROMEO, "Romeo")
        self.assertEqual(error_condition(self.query(JULIET, ROOM, INFO, node="x")),
                         "item-not-found")
        self.assertEqual(error_condition(self.query(JULIET, ROOM, ITEMS, node="x")),
                         "item-not-found")
        self.assertEqual(error_condition(self.query(JULIET, MUC, INFO, node="x")),
                         "service-unavailable")
        self.assertEqual(error_condition(self.query(JULIET, MUC, ITEMS, node="x")),
                         "service-unavailable")

    def test_errors_are_by_the_room(self):
        self.h.create(ROMEO, "Romeo")
        reply = self.query(JULIET, ROOM, INFO, node="x")
        self.assertEqual(reply.error["by"], ROOM)
