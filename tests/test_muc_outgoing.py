"""The muc#user payloads the room builds (xmppd.muc.outgoing): order of codes and items."""

from __future__ import annotations

from twisted.trial import unittest

from tests.muc_fakes import (
    JULIET,
    NS_MUC_ADMIN,
    NS_MUC_USER,
    NURSE,
    ROMEO,
    ROOM,
    MUCHarness,
    muc_user_x,
)

JULIET2 = "juliet@localhost/garden"


def layout(stanza) -> list[str]:
    """The muc#user ``<x/>`` children in order: ``status:CODE`` or the element name."""
    x = muc_user_x(stanza)
    assert x is not None, stanza.toXml()
    return [
        f"status:{e['code']}" if e.name == "status" else e.name
        for e in x.elements()
        if e.uri == NS_MUC_USER
    ]


def presences(stanzas, source: str, kind: str | None = None):
    return [
        s for s in stanzas
        if s.name == "presence" and s.getAttribute("from") == source
        and s.getAttribute("type") == kind
    ]


def jids(stanza) -> list[str | None]:
    return [item.getAttribute("jid") for item in muc_user_x(stanza).elements(NS_MUC_USER, "item")]


class CodeOrderTests(unittest.TestCase):
    """Event codes before the item(s), 110 last, in every kind of presence."""

    def setUp(self):
        self.h = MUCHarness(self)

    def admin(self, item: str) -> None:
        self.h.send(
            ROMEO,
            f"<iq type='set' id='a' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>{item}</query></iq>",
        )

    def test_creation(self):
        (presence,) = presences(self.h.join(ROMEO, "Romeo"), f"{ROOM}/Romeo")
        self.assertEqual(layout(presence), ["status:201", "item", "status:110"])

    def test_non_anonymous_join(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_whois": "anyone"})
        (presence,) = presences(self.h.join(JULIET, "Juliet"), f"{ROOM}/Juliet")
        self.assertEqual(layout(presence), ["status:100", "item", "status:110"])

    def test_nick_change(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(JULIET, f"<presence to='{ROOM}/Jules'/>")
        (own,) = presences(self.h.take(JULIET), f"{ROOM}/Juliet", "unavailable")
        (other,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(layout(own), ["status:303", "item", "status:110"])
        self.assertEqual(layout(other), ["status:303", "item"])

    def test_nick_change_of_one_session_of_several(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.join(JULIET2, "Juliet")
        self.h.clear()
        self.h.send(JULIET2, f"<presence to='{ROOM}/Jules'/>")
        (own,) = presences(self.h.take(JULIET2), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(layout(own), ["status:303", "item", "status:110"])
        self.assertEqual(jids(own), [JULIET2])

    def test_kick(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.admin("<item nick='Juliet' role='none'><reason>out</reason></item>")
        (own,) = presences(self.h.take(JULIET), f"{ROOM}/Juliet", "unavailable")
        (other,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(layout(own), ["status:307", "item", "status:110"])
        self.assertEqual(layout(other), ["status:307", "item"])

    def test_ban(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.admin("<item jid='juliet@localhost' affiliation='outcast'/>")
        (own,) = presences(self.h.take(JULIET), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(layout(own), ["status:301", "item", "status:110"])

    def test_removed_from_members_only_room(self):
        self.h.create(ROMEO, "Romeo", fields={"muc#roomconfig_membersonly": "1"})
        self.admin("<item jid='juliet@localhost' affiliation='member'/>")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.admin("<item jid='juliet@localhost' affiliation='none'/>")
        (own,) = presences(self.h.take(JULIET), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(layout(own), ["status:321", "item", "status:110"])

    def test_removed_after_an_error(self):
        self.h.create(ROMEO, "Romeo")
        self.h.join(JULIET, "Juliet")
        self.h.clear()
        self.h.send(
            JULIET,
            f"<presence type='error' to='{ROOM}/Juliet'><error type='cancel'>"
            "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        )
        (other,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(layout(other), ["status:333", "item"])

    def test_plain_presence_has_only_the_item(self):
        self.h.create(ROMEO, "Romeo")
        (presence,) = presences(self.h.join(JULIET, "Juliet"), f"{ROOM}/Juliet")
        self.assertEqual(layout(presence), ["item", "status:110"])
        (other,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet")
        self.assertEqual(layout(other), ["item"])


class SessionItemTests(unittest.TestCase):
    """One item per session of a nick for those who see real JIDs."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(ROMEO, "Romeo")
        self.h.join(NURSE, "Nurse")
        self.h.join(JULIET, "Juliet")
        self.h.clear()

    def test_moderator_sees_every_session(self):
        self.h.join(JULIET2, "Juliet")
        (presence,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet")
        self.assertEqual(jids(presence), [JULIET, JULIET2])
        self.assertEqual(layout(presence), ["item", "item"])

    def test_others_see_one_item_without_jid(self):
        self.h.join(JULIET2, "Juliet")
        (presence,) = presences(self.h.take(NURSE), f"{ROOM}/Juliet")
        self.assertEqual(jids(presence), [None])

    def test_self_presence_lists_the_sessions_then_110(self):
        (presence,) = presences(self.h.join(JULIET2, "Juliet"), f"{ROOM}/Juliet")
        self.assertEqual(jids(presence), [JULIET, JULIET2])
        self.assertEqual(layout(presence), ["item", "item", "status:110"])

    def test_presence_update_lists_every_session(self):
        self.h.join(JULIET2, "Juliet")
        self.h.clear()
        self.h.send(JULIET, f"<presence to='{ROOM}/Juliet'><show>away</show></presence>")
        (presence,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet")
        self.assertEqual(jids(presence), [JULIET, JULIET2])

    def test_joiner_sees_the_sessions_of_others(self):
        self.h.join(JULIET2, "Juliet")
        stanzas = self.h.join("romeo@localhost/other", "Romeo")
        (presence,) = presences(stanzas, f"{ROOM}/Juliet")
        self.assertEqual(jids(presence), [JULIET, JULIET2])

    def test_one_session_leaving_leaves_one_item(self):
        self.h.join(JULIET2, "Juliet")
        self.h.clear()
        self.h.send(JULIET2, f"<presence type='unavailable' to='{ROOM}/Juliet'/>")
        (own,) = presences(self.h.take(JULIET2), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(jids(own), [JULIET2])
        (other,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet")
        self.assertEqual(jids(other), [JULIET])

    def test_kick_lists_every_session(self):
        self.h.join(JULIET2, "Juliet")
        self.h.clear()
        self.h.send(
            ROMEO,
            f"<iq type='set' id='k' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>"
            "<item nick='Juliet' role='none'/></query></iq>",
        )
        (other,) = presences(self.h.take(ROMEO), f"{ROOM}/Juliet", "unavailable")
        self.assertEqual(jids(other), [JULIET, JULIET2])
        self.assertEqual(layout(other), ["status:307", "item", "item"])


