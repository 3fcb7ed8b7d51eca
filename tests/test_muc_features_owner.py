"""xmppd.muc.features.owner: muc#owner, the configuration form and room destruction."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    MUC,
    NS_MUC_OWNER,
    NS_MUC_USER,
    NS_X_DATA,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    kinds,
    muc_user_x,
    status_codes,
)

#: The form's fields, in their order (scenario scripts check it strictly).
FORM_ORDER = [
    "FORM_TYPE",
    "muc#roomconfig_roomname",
    "muc#roomconfig_roomdesc",
    "muc#roomconfig_lang",
    "muc#roomconfig_persistentroom",
    "muc#roomconfig_publicroom",
    "muc#roomconfig_membersonly",
    "muc#roomconfig_moderatedroom",
    "muc#roomconfig_passwordprotectedroom",
    "muc#roomconfig_roomsecret",
    "muc#roomconfig_whois",
    "muc#roomconfig_maxusers",
    "muc#roomconfig_changesubject",
    "muc#roomconfig_allowinvites",
    "muc#roomconfig_allowpm",
    "muc#roomconfig_presencebroadcast",
    "muc#roomconfig_historylength",
    "muc#roomconfig_enablelogging",
]


def form_values(form):
    values = {}
    for field in form.elements(NS_X_DATA, "field"):
        values[field.getAttribute("var")] = [str(v) for v in field.elements(NS_X_DATA, "value")]
    return values


class OwnerTests(unittest.TestCase):
    """The configuration form, its submission, cancel and destroy."""

    def setUp(self):
        self.h = MUCHarness(self)

    def get_form(self, who=ROMEO):
        self.h.send(who, f"<iq type='get' id='g' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>")
        (reply,) = self.h.take(who)
        return reply

    def test_reserved_room_form(self):
        self.h.join(ROMEO, "Romeo")
        self.h.send(
            ROMEO, f"<iq type='get' id='g' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>"
        )
        (reply,) = self.h.take(ROMEO)
        self.assertEqual(reply["type"], "result")
        form = next(reply.query.elements(NS_X_DATA, "x"))
        self.assertEqual(form["type"], "form")
        values = form_values(form)
        self.assertEqual(values["FORM_TYPE"], ["http://jabber.org/protocol/muc#roomconfig"])
        for var in (
            "roomname",
            "roomdesc",
            "lang",
            "persistentroom",
            "publicroom",
            "membersonly",
            "moderatedroom",
            "passwordprotectedroom",
            "roomsecret",
            "whois",
            "maxusers",
            "changesubject",
            "allowinvites",
            "allowpm",
            "presencebroadcast",
            "historylength",
            "enablelogging",
        ):
            self.assertIn("muc#roomconfig_" + var, values)
        self.assertEqual(values["muc#roomconfig_whois"], ["moderators"])
        self.assertEqual(values["muc#roomconfig_historylength"], ["20"])
        self.assertEqual(values["muc#roomconfig_publicroom"], ["true"])

    def test_form_shows_current_values(self):
        self.h.create(
            ROMEO,
            "Romeo",
            fields={"muc#roomconfig_roomname": "Balcony", "muc#roomconfig_roomsecret": "s3"},
        )
        self.h.send(
            ROMEO, f"<iq type='get' id='g' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>"
        )
        (reply,) = self.h.take(ROMEO)
        values = form_values(next(reply.query.elements(NS_X_DATA, "x")))
        self.assertEqual(values["muc#roomconfig_roomname"], ["Balcony"])
        self.assertEqual(values["muc#roomconfig_passwordprotectedroom"], ["true"])
        self.assertEqual(values["muc#roomconfig_roomsecret"], ["s3"])

    def test_non_owner_cannot_configure(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.send(
            JULIET, f"<iq type='get' id='g' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>"
        )
        (reply,) = self.h.take(JULIET)
        self.assertEqual(error_condition(reply), "forbidden")
        stanzas = self.h.configure(JULIET, fields={"muc#roomconfig_roomname": "x"})
        self.assertEqual(error_condition(stanzas[0]), "forbidden")

    def test_bad_values(self):
        self.h.create(ROMEO, "Romeo")
        for fields in (
            {"muc#roomconfig_persistentroom": "maybe"},
            {"muc#roomconfig_whois": "everybody"},
            {"muc#roomconfig_maxusers": "many"},
            {"muc#roomconfig_historylength": "-3"},
            {"muc#roomconfig_allowpm": "all"},
            {"muc#roomconfig_passwordprotectedroom": "1"},
        ):
            (reply,) = self.h.configure(ROMEO, fields=fields)
            self.assertEqual(reply["type"], "error", fields)
            self.assertEqual(error_condition(reply), "not-acceptable", fields)
        self.h.send(
            ROMEO,
            f"<iq type='set' id='b' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>"
            f"<x xmlns='{NS_X_DATA}' type='submit'><field var='FORM_TYPE'>"
            "<value>urn:other</value></field></x></query></iq>",
        )
        (reply,) = self.h.take(ROMEO)
        self.assertEqual(error_condition(reply), "bad-request")
        self.h.send(
            ROMEO, f"<iq type='set' id='b' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>"
        )
        (reply,) = self.h.take(ROMEO)
        self.assertEqual(error_condition(reply), "bad-request")

    def test_cancel_destroys_locked_room(self):
        self.h.join(ROMEO, "Romeo")
        self.h.send(
            ROMEO,
            f"<iq type='set' id='c' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>"
            f"<x xmlns='{NS_X_DATA}' type='cancel'/></query></iq>",
        )
        stanzas = self.h.take(ROMEO)
        self.assertEqual(
            kinds(stanzas), [("iq", ROOM, "result"), ("presence", f"{ROOM}/Romeo", "unavailable")]
        )
        self.assertNotIn("room", self.h.service.rooms)
        stanzas = self.h.join(JULIET, "Juliet")
        self.assertEqual(status_codes(stanzas[0])[0], "201")

    def test_status_codes_for_anonymity_and_logging(self):
        self.h.create(ROMEO, "Romeo")
        stanzas = self.h.configure(
            ROMEO, fields={"muc#roomconfig_whois": "anyone", "muc#roomconfig_enablelogging": "1"}
        )
        self.assertEqual(status_codes(stanzas[1]), ["104", "170", "172"])
        stanzas = self.h.configure(ROMEO, fields={"muc#roomconfig_whois": "moderators"})
        self.assertEqual(status_codes(stanzas[1]), ["104", "173"])
        stanzas = self.h.configure(ROMEO, fields={"muc#roomconfig_whois": "moderators"})
        self.assertEqual(len(stanzas), 1)  # no change, no announcement

    def test_destroy(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(
            ROMEO,
            f"<iq type='set' id='d' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>"
            f"<destroy jid='other@{MUC}'><reason>Macbeth doth come</reason></destroy>"
            "</query></iq>",
        )
        romeo = self.h.take(ROMEO)
        self.assertEqual(romeo[0].name, "iq")
        juliet = self.h.take(JULIET)
        self.assertEqual(kinds(juliet), [("presence", f"{ROOM}/Juliet", "unavailable")])
        destroy = next(muc_user_x(juliet[0]).elements(NS_MUC_USER, "destroy"))
        self.assertEqual(destroy["jid"], f"other@{MUC}")
        self.assertEqual(str(next(destroy.elements(NS_MUC_USER, "reason"))), "Macbeth doth come")
        self.assertNotIn("room", self.h.service.rooms)

    def test_form_fields_in_order(self):
        self.h.join(ROMEO, "Romeo")
        form = next(self.get_form().query.elements(NS_X_DATA, "x"))
        self.assertEqual([f["var"] for f in form.elements(NS_X_DATA, "field")], FORM_ORDER)
        types = {f["var"]: f.getAttribute("type") for f in form.elements(NS_X_DATA, "field")}
        self.assertEqual(types["muc#roomconfig_roomsecret"], "text-private")
        self.assertEqual(types["muc#roomconfig_presencebroadcast"], "list-multi")

    def test_get_with_a_payload_is_a_bad_request(self):
        self.h.join(ROMEO, "Romeo")
        self.h.send(
            ROMEO,
            f"<iq type='get' id='g' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'><x/></query></iq>",
        )
        (reply,) = self.h.take(ROMEO)
        self.assertEqual(error_condition(reply), "bad-request")

    def test_bad_alternate_venue_refuses_the_destruction(self):
        self.h.create(ROMEO, "Romeo")
        self.h.send(
            ROMEO,
            f"<iq type='set' id='d' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>"
            "<destroy jid='@@'/></query></iq>",
        )
        (reply,) = self.h.take(ROMEO)
        self.assertEqual(error_condition(reply), "jid-malformed")
        self.assertIn("room", self.h.service.rooms)

    def test_refused_form_changes_nothing(self):
        self.h.create(ROMEO, "Romeo")
        (reply,) = self.h.configure(
            ROMEO, fields={"muc#roomconfig_roomname": "New", "muc#roomconfig_maxusers": "x"}
        )
        self.assertEqual(error_condition(reply), "not-acceptable")
        self.assertEqual(self.h.service.rooms["room"].config.name, "")
