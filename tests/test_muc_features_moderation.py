"""xmppd.muc.features.moderation: moderated rooms and voice requests."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NS_X_DATA,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    item_of,
)
from xmppd.module import Scope

REQUEST = "http://jabber.org/protocol/muc#request"


def form_values(form):
    values = {}
    for field in form.elements(NS_X_DATA, "field"):
        values[field.getAttribute("var")] = [str(v) for v in field.elements(NS_X_DATA, "value")]
    return values


def request_form(fields: dict, form_type: str = REQUEST) -> str:
    body = f"<field var='FORM_TYPE'><value>{form_type}</value></field>"
    for var, value in fields.items():
        body += f"<field var='{var}'><value>{value}</value></field>"
    return f"<message to='{ROOM}'><x xmlns='{NS_X_DATA}' type='submit'>{body}</x></message>"


class ModerationTests(unittest.TestCase):
    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.room = self.h.service.rooms["room"]

    def test_voice_request(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_moderatedroom": "1"})
        self.h.join(NURSE, "Nurse")
        self.h.clear()
        self.h.send(
            NURSE,
            f"<message to='{ROOM}'><x xmlns='{NS_X_DATA}' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
            "<field var='muc#role'><value>participant</value></field></x></message>",
        )
        (request,) = self.h.take(ROMEO)
        values = form_values(next(request.elements(NS_X_DATA, "x")))
        self.assertEqual(values["muc#roomnick"], ["Nurse"])
        self.assertEqual(self.h.take(JULIET), [])
        self.h.send(
            ROMEO,
            f"<message to='{ROOM}'><x xmlns='{NS_X_DATA}' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
            "<field var='muc#role'><value>participant</value></field>"
            "<field var='muc#roomnick'><value>Nurse</value></field>"
            "<field var='muc#request_allow'><value>true</value></field></x></message>",
        )
        nurse = self.h.take(NURSE)
        self.assertEqual(item_of(nurse[0])["role"], "participant")

    def test_visitors_in_moderated_rooms(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_moderatedroom": "1"})
        stanzas = self.h.join(NURSE, "Nurse")
        self.assertEqual(item_of(stanzas[-2])["role"], "visitor")
        self.assertIn("muc_moderated", self.h.service.modules.features(Scope.ROOM, self.room))
        self.h.send(NURSE, f"<message type='groupchat' to='{ROOM}'><body>hi</body></message>")
        (error,) = self.h.take(NURSE)
        self.assertEqual(error_condition(error), "forbidden")

    def test_requests_that_are_refused(self):
        # not moderated: there is no voice to request
        self.h.send(JULIET, request_form({"muc#role": "participant"}))
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "not-acceptable")
        # another form type
        self.h.send(JULIET, request_form({}, form_type="urn:other"))
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "bad-request")
        # from outside the room
        self.h.send(NURSE, request_form({"muc#role": "participant"}))
        (error,) = self.h.take(NURSE)
        self.assertEqual(error_condition(error), "not-acceptable")
        # an approval by a participant
        self.h.send(JULIET, request_form({"muc#roomnick": "Romeo", "muc#request_allow": "1"}))
        (error,) = self.h.take(JULIET)
        self.assertEqual(error_condition(error), "forbidden")

    def test_denied_request_changes_nothing(self):
        self.h.configure(ROMEO, fields={"muc#roomconfig_moderatedroom": "1"})
        self.h.join(NURSE, "Nurse")
        self.h.send(NURSE, request_form({"muc#role": "participant"}))
        self.assertEqual(self.room.data["moderation"], {"Nurse"})
        self.h.clear()
        self.h.send(ROMEO, request_form({"muc#roomnick": "Nurse", "muc#request_allow": "0"}))
        self.assertEqual(self.h.take(NURSE), [])
        self.assertEqual(self.room.occupants["Nurse"].role, "visitor")
        self.assertEqual(self.room.data["moderation"], set())
