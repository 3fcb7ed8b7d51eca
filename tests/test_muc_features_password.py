"""xmppd.muc.features.password: the room secret and the back-off against guessing it."""

from __future__ import annotations

from twisted.internet import task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.words.protocols.jabber import jid

from tests.muc_fakes import (
    JULIET,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    error_condition,
    parse,
    status_codes,
)
from xmppd.config import MUCSettings
from xmppd.errors import StanzaError
from xmppd.module import Scope
from xmppd.muc.config import RoomConfig
from xmppd.muc.features.password import Password
from xmppd.muc.host import MUCContext
from xmppd.muc.room import JoinAttempt

SECRET = "cauldronburn"


def error_of(stanza):
    return next(e for e in stanza.elements() if e.name == "error")


class PasswordTests(unittest.TestCase):
    """Protection through the configuration form; the 401 refusal."""

    def setUp(self):
        self.h = MUCHarness(self)

    def test_password_protection(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_roomsecret": "pw"})
        (error,) = self.h.join(JULIET, "Juliet", password="nightingale")
        self.assertEqual(error["type"], "error")
        self.assertEqual(error["from"], f"{ROOM}/Juliet")
        err = error.firstChildElement()
        self.assertEqual(dict(err.attributes), {"type": "auth", "code": "401", "by": ROOM})
        self.assertEqual(error_condition(error), "not-authorized")
        # The error does not echo the password the joiner sent
        self.assertNotIn("nightingale", error.toXml())
        stanzas = self.h.configure(ROMEO, fields={"muc#roomconfig_passwordprotectedroom": "0"})
        self.assertEqual(status_codes(stanzas[1]), ["104"])
        stanzas = self.h.join(JULIET, "Juliet")
        self.assertEqual(stanzas[-1].name, "message")

    def test_protected_field_and_disco(self):
        self.h.create(ROMEO, "Romeo")
        room = self.h.service.rooms["room"]
        (reply,) = self.h.configure(
            ROMEO, fields={"muc#roomconfig_passwordprotectedroom": "1"}
        )
        self.assertEqual(error_condition(reply), "not-acceptable")
        self.assertEqual(room.config.password, "")
        self.h.configure(ROMEO, fields={"muc#roomconfig_passwordprotectedroom": "1",
                                        "muc#roomconfig_roomsecret": " s p "})
        self.assertEqual(room.config.password, " s p ")  # as typed
        self.assertIn("muc_passwordprotected", self.h.service.modules.features(Scope.ROOM, room))
        self.h.configure(ROMEO, fields={"muc#roomconfig_roomsecret": ""})
        self.assertEqual(room.config.password, "")

    def test_a_member_of_the_room_needs_it_too(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_roomsecret": SECRET})
        self.h.service.rooms["room"].affiliations.set("juliet@localhost", "member")
        (error,) = self.h.join(JULIET, "Juliet")
        self.assertEqual(error_condition(error), "not-authorized")
        stanzas = self.h.join(JULIET, "Juliet", password=SECRET)
        self.assertEqual(status_codes(stanzas[-2]), ["110"])


class _Room:
    """Just what the password module reads of a room."""

    def __init__(self, name, secret):
        self.name, self.jid = name, f"{name}@conference.localhost"
        self.config = RoomConfig(password=secret)
        self.data = {}


class ModuleTests(unittest.TestCase):
    """The module alone, with a fake room and a clock."""

    def setUp(self):
        clock = task.Clock()
        context = MUCContext("conference.localhost", clock, {}, lambda bare: False, None,
                             lambda *a: None)
        settings = MUCSettings(password_max_failures=2, password_backoff=5)
        self.module = Password(context, settings)
        self.clock = clock

    def check(self, room, password=None):
        pw = f"<password>{password}</password>" if password is not None else ""
        stanza = parse(f"<presence><x xmlns='http://jabber.org/protocol/muc'>{pw}</x></presence>")
        attempt = JoinAttempt(jid.JID("juliet@localhost/j"), "Juliet", "none",
                              stanza.firstChildElement(), stanza)
        try:
            self.module.check(room, attempt)
        except StanzaError as exc:
            return exc.condition
        return "ok"

    def test_open_room_admits(self):
        self.assertEqual(self.check(_Room("r", "")), "ok")

    def test_back_off_per_room_object(self):
        room = _Room("r", "s")
        self.assertEqual(self.check(room, "x"), "not-authorized")
        self.assertEqual(self.check(room, "y"), "not-authorized")
        self.assertEqual(self.check(room, "s"), "resource-constraint")
        self.assertEqual(self.check(_Room("r", "s"), "s"), "ok")  # a new room of that name
        self.clock.advance(5)
        self.assertEqual(self.check(room, "s"), "ok")


class PasswordThrottleTests(unittest.TestCase):
    """Failed room-password joins are throttled per room and user."""

    def setUp(self):
        self.h = MUCHarness(
            self, password_max_failures=3, password_failure_window=60, password_backoff=30
        )
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_roomsecret": SECRET})
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def attempt(self, who, password, nick="Juliet"):
        stanzas = self.h.join(who, nick, password=password)
        return stanzas

    def test_back_off_after_failures(self):
        for _ in range(3):
            (error,) = self.attempt(JULIET, "guess")
            self.assertEqual(error_condition(error), "not-authorized")
        # blocked now: even the right password is refused, with a wait error
        (error,) = self.attempt(JULIET, SECRET)
        self.assertEqual(error_condition(error), "resource-constraint")
        self.assertEqual(error_of(error)["type"], "wait")
        self.assertEqual(error_of(error)["by"], ROOM)
        # another user is not affected
        stanzas = self.attempt(NURSE, SECRET, nick="Nurse")
        self.assertEqual(stanzas[0].getAttribute("type"), None)
        self.h.clock.advance(29)
        (error,) = self.attempt(JULIET, SECRET)
        self.assertEqual(error_condition(error), "resource-constraint")
        self.h.clock.advance(1)
        stanzas = self.attempt(JULIET, SECRET)
        self.assertIn("Juliet", self.h.service.rooms["room"].occupants)
        self.assertNotEqual(stanzas[0].getAttribute("type"), "error")

    def test_second_block_is_longer(self):
        for _ in range(3):
            self.attempt(JULIET, "guess")
        self.h.clock.advance(30)
        (error,) = self.attempt(JULIET, "guess again")
        self.assertEqual(error_condition(error), "not-authorized")
        self.h.clock.advance(59)
        (error,) = self.attempt(JULIET, SECRET)
        self.assertEqual(error_condition(error), "resource-constraint")
        self.h.clock.advance(1)
        self.assertNotEqual(self.attempt(JULIET, SECRET)[0].getAttribute("type"), "error")

    def test_a_new_room_of_the_same_name_starts_afresh(self):
        """The back-off belongs to the room: destroyed and re-created, it is gone."""
        for _ in range(3):
            self.attempt(JULIET, "guess")
        (error,) = self.attempt(JULIET, SECRET)
        self.assertEqual(error_condition(error), "resource-constraint")
        self.h.send(
            ROMEO,
            f"<iq type='set' id='d' to='{ROOM}'>"
            "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>",
        )
        self.assertNotIn("room", self.h.service.rooms)
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_roomsecret": "new secret"})
        (error,) = self.attempt(JULIET, "guess")
        self.assertEqual(error_condition(error), "not-authorized")
        stanzas = self.attempt(JULIET, "new secret")
        self.assertNotEqual(stanzas[0].getAttribute("type"), "error")

    def test_per_room(self):
        self.h.create(ROMEO, "Romeo", room="other", fields={"muc#roomconfig_roomsecret": SECRET})
        for _ in range(3):
            self.attempt(JULIET, "guess")
        stanzas = self.h.join(JULIET, "Juliet", room="other", password=SECRET)
        self.assertNotEqual(stanzas[0].getAttribute("type"), "error")

    def test_join_without_password_is_not_a_failure(self):
        for _ in range(5):
            (error,) = self.h.join(JULIET, "Juliet")
            self.assertEqual(error_condition(error), "not-authorized")
        self.assertNotEqual(self.attempt(JULIET, SECRET)[0].getAttribute("type"), "error")

    def test_secret_never_logged(self):
        for _ in range(4):
            self.attempt(JULIET, "myguess")
        self.attempt(JULIET, SECRET)
        self.assertTrue(self.events)
        text = repr(self.events)
        self.assertNotIn("myguess", text)
        self.assertNotIn(SECRET, text)
        self.assertIn("juliet@localhost", text)
