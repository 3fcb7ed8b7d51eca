"""A persistent room with a password and a member list survives a restart of the server.

End to end: the whole service is started, real clients (STARTTLS + SCRAM)
set the room up, the service is stopped and a second one started on the
same configuration (same database), and real clients check the room.
"""

from twisted.internet import defer
from twisted.trial import unittest

from tests.support import make_test_config, start_server
from tests.test_server_e2e import element, login, next_stanza

MUC_NS = "http://jabber.org/protocol/muc"
ROOM = "vault@conference.localhost"
SECRET = "s3cret and more"


def is_iq(iq_id):
    return lambda s: s.name == "iq" and s.getAttribute("id") == iq_id


def presence_from(address):
    return lambda s: s.name == "presence" and s.getAttribute("from") == address


def error_condition(stanza):
    for error in stanza.elements():
        if error.name == "error":
            for condition in error.elements():
                if condition.uri == "urn:ietf:params:xml:ns:xmpp-stanzas":
                    return error.getAttribute("code"), condition.name
    return None


def form_values(iq):
    values = {}
    for x in iq.query.elements("jabber:x:data", "x"):
        for field in x.elements("jabber:x:data", "field"):
            values[field.getAttribute("var")] = [
                str(v) for v in field.elements("jabber:x:data", "value")
            ]
    return values


class RoomRestartTests(unittest.TestCase):
    """Issue 4: "a persistent room with a password and a member list survives a restart"."""

    timeout = 30

    @defer.inlineCallbacks
    def test_password_members_only_room_survives_restart(self):
        config = make_test_config(self, c2s={"require_encryption": True})
        first = start_server(self, config)
        for name in ("owner", "member", "stranger"):
            yield first.create_user(name, "pw")

        owner = yield login(first, "owner")
        owner.send(element(f"<presence to='{ROOM}/Boss'><x xmlns='{MUC_NS}'/></presence>"))
        created = yield next_stanza(owner, presence_from(f"{ROOM}/Boss"))
        self.assertIsNone(created.getAttribute("type"))
        owner.send(
            element(
                f"<iq type='set' id='cfg' to='{ROOM}'>"
                f"<query xmlns='{MUC_NS}#owner'><x xmlns='jabber:x:data' type='submit'>"
                f"<field var='FORM_TYPE'><value>{MUC_NS}#roomconfig</value></field>"
                "<field var='muc#roomconfig_roomname'><value>The Vault</value></field>"
                "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
                "<field var='muc#roomconfig_membersonly'><value>1</value></field>"
                "<field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>"
                f"<field var='muc#roomconfig_roomsecret'><value>{SECRET}</value></field>"
                "</x></query></iq>"
            )
        )
        reply = yield next_stanza(owner, is_iq("cfg"))
        self.assertEqual(reply["type"], "result")
        owner.send(
            element(
                f"<iq type='set' id='aff' to='{ROOM}'><query xmlns='{MUC_NS}#admin'>"
                "<item jid='member@localhost' affiliation='member'><reason>trusted</reason></item>"
                "</query></iq>"
            )
        )
        reply = yield next_stanza(owner, is_iq("aff"))
        self.assertEqual(reply["type"], "result")
        yield owner.disconnect()
        yield first.server.muc.flush()
        yield first.server.stopService()

        second = start_server(self, config)
        yield second.server.muc.ready

        # a non-member is refused: registration required (407), password or not
        stranger = yield login(second, "stranger")
        stranger.send(
            element(
                f"<presence to='{ROOM}/Intruder'><x xmlns='{MUC_NS}'>"
                f"<password>{SECRET}</password></x></presence>"
            )
        )
        refused = yield next_stanza(stranger, presence_from(f"{ROOM}/Intruder"))
        self.assertEqual(refused["type"], "error")
        self.assertEqual(error_condition(refused), ("407", "registration-required"))

        # the member still needs the password (401), and gets in with it
        member = yield login(second, "member")
        member.send(element(f"<presence to='{ROOM}/Friend'><x xmlns='{MUC_NS}'/></presence>"))
        refused = yield next_stanza(member, presence_from(f"{ROOM}/Friend"))
        self.assertEqual(refused["type"], "error")
        self.assertEqual(error_condition(refused), ("401", "not-authorized"))
        member.send(
            element(
                f"<presence to='{ROOM}/Friend'><x xmlns='{MUC_NS}'>"
                f"<password>{SECRET}</password></x></presence>"
            )
        )
        joined = yield next_stanza(member, presence_from(f"{ROOM}/Friend"))
        self.assertIsNone(joined.getAttribute("type"))
        x = next(joined.elements(MUC_NS + "#user", "x"))
        item = next(x.elements(MUC_NS + "#user", "item"))
        self.assertEqual((item["affiliation"], item["role"]), ("member", "participant"))
        self.assertIn("110", [s["code"] for s in x.elements(MUC_NS + "#user", "status")])

        # the owner finds the configuration and the affiliation lists intact
        owner = yield login(second, "owner")
        owner.send(
            element(f"<iq type='get' id='form' to='{ROOM}'><query xmlns='{MUC_NS}#owner'/></iq>")
        )
        reply = yield next_stanza(owner, is_iq("form"))
        self.assertEqual(reply["type"], "result")
        values = form_values(reply)
        self.assertEqual(values["muc#roomconfig_roomname"], ["The Vault"])
        self.assertEqual(values["muc#roomconfig_persistentroom"], ["true"])
        self.assertEqual(values["muc#roomconfig_membersonly"], ["true"])
        self.assertEqual(values["muc#roomconfig_passwordprotectedroom"], ["true"])
        self.assertEqual(values["muc#roomconfig_roomsecret"], [SECRET])
        for affiliation, expected in (
            ("member", [("member@localhost", "trusted")]),
            ("owner", [("owner@localhost", None)]),
        ):
            owner.send(
                element(
                    f"<iq type='get' id='{affiliation}' to='{ROOM}'>"
                    f"<query xmlns='{MUC_NS}#admin'><item affiliation='{affiliation}'/>"
                    "</query></iq>"
                )
            )
            reply = yield next_stanza(owner, is_iq(affiliation))
            self.assertEqual(reply["type"], "result")
            items = [
                (i["jid"], str(i.reason) if i.reason is not None else None)
                for i in reply.query.elements(MUC_NS + "#admin", "item")
            ]
            self.assertEqual(items, expected)
        for client in (stranger, member, owner):
            yield client.disconnect()
