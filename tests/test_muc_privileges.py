"""Who may change whose affiliation and role: every combination, against XEP-0045.

The expected outcomes are written out below from XEP-0045 (section 5.1 and
5.2 privilege tables; section 8 moderator use cases: kick, voice; section 9
admin use cases: ban, membership, moderator status; section 10 owner use
cases: ownership and admin status) and checked against the room state
machine for every actor (owner, admin, member, none, each as moderator,
participant or visitor where that is possible, or absent from the room) and
every target (every affiliation and role), and every new affiliation or role.

The rules, as the XEP states them:

* affiliations: an owner may give any affiliation to anyone (10.3-10.7,
  9.1-9.4); an admin may only move users among none, member and outcast
  (9.1-9.4), gets ``not-allowed`` when the target is an admin or owner
  ("an admin cannot ban/demote someone of equal or higher affiliation") and
  ``forbidden`` when trying to grant admin or owner (10.3, 10.6: owners
  only); members and unaffiliated users may change nothing (``forbidden``).
  The actor's role plays no part.
* roles: only a moderator in the room changes roles (``forbidden``
  otherwise, 8.2, 8.4); an admin or owner keeps the moderator role: kick,
  silence or demote gets ``not-allowed`` (8.2, 9.7); granting or revoking
  moderator status (and so acting on a moderator) needs an admin or owner
  (9.6, 9.7: ``forbidden``).
* the room keeps at least one owner (10.7: ``conflict``).
"""

from __future__ import annotations

import itertools

from twisted.trial import unittest
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from tests.muc_fakes import NS_MUC_ADMIN, ROOM, MUCHarness, error_condition, parse
from xmppd.errors import StanzaError
from xmppd.muc import affiliations as aff
from xmppd.muc.config import RoomConfig
from xmppd.muc.occupant import Occupant
from xmppd.muc.room import Room

CREATOR = "creator@localhost/c"
ACTOR = "actor@localhost/a"
TARGET = "target@localhost/t"
OK = "ok"

AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")
ROLES = ("moderator", "participant", "visitor", "none")

#: (affiliation, role) pairs an occupant can have; None: not in the room.
#: Owners and admins are always moderators (5.1.2, 5.2.1).
PEOPLE = [
    ("owner", "moderator"),
    ("admin", "moderator"),
    ("member", "moderator"),
    ("member", "participant"),
    ("member", "visitor"),
    ("none", "moderator"),
    ("none", "participant"),
    ("none", "visitor"),
    ("owner", None),
    ("admin", None),
    ("member", None),
    ("none", None),
]
TARGETS_FOR_AFFILIATION = PEOPLE + [("outcast", None)]


def expected_affiliation_change(actor_affiliation: str, target_old: str, target_new: str) -> str:
    """XEP-0045 sections 9 and 10, written as a table lookup."""
    table = {
        # actor:  (targets it may change, affiliations it may give)
        "owner": (set(AFFILIATIONS), set(AFFILIATIONS)),
        "admin": ({"member", "none", "outcast"}, {"member", "none", "outcast"}),
        "member": (set(), set()),
        "none": (set(), set()),
    }
    targets, grants = table[actor_affiliation]
    if actor_affiliation in ("member", "none"):
        return "forbidden"
    if target_old not in targets:
        return "not-allowed"
    if target_new not in grants:
        return "forbidden"
    return OK


def expected_role_change(actor: tuple, target: tuple, new_role: str) -> str:
    """XEP-0045 sections 8 and 9 (roles), written as a table lookup."""
    actor_affiliation, actor_role = actor
    target_affiliation, target_role = target
    if actor_role != "moderator":
        return "forbidden"
    if target_affiliation in ("owner", "admin") and new_role != "moderator":
        return "not-allowed"
    touches_moderator = new_role == "moderator" or target_role == "moderator"
    if touches_moderator and actor_affiliation not in ("owner", "admin"):
        return "forbidden"
    return OK


class PrivilegeTableTests(unittest.TestCase):
    """Every (actor, target, change), given to the room's state machine.

    Each case builds a fresh moderated room holding the actor and the target
    in the wanted states and hands the muc#admin request to
    :meth:`Room.handle_iq` directly (the service's stanza plumbing is tested
    elsewhere; here it would only multiply the run time by thirty), then
    checks the answer (a refusal is the error reply and nothing else) and
    the room's state.
    """

    def setUp(self):
        self.h = MUCHarness(self)
        self.sent = []
        self.h.service.send = self.sent.append
        self.actor = jid.JID(ACTOR)

    def room_with(self, actor: tuple, target: tuple) -> Room:
        """A moderated room with ACTOR and TARGET in the given states."""
        room = Room(self.h.service.room_host, "room", RoomConfig(moderated=True))
        room.affiliations.set("creator@localhost", "owner")
        for full, nick, (affiliation, role) in (
            (ACTOR, "Actor", actor),
            (TARGET, "Target", target),
        ):
            bare = full.split("/")[0]
            room.affiliations.set(bare, affiliation)
            if role is not None:
                occupant = Occupant(nick, bare, role)
                occupant.set_presence(full, domish.Element((None, "presence")))
                room.occupants[nick] = occupant
                room.sessions[full] = occupant
        self.h.service.rooms["room"] = room
        del self.sent[:]
        return room

    def admin_set(self, room: Room, item: str) -> str:
        stanza = parse(
            f"<iq type='set' id='x' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>{item}</query></iq>"
        )
        stanza["from"] = ACTOR
        room.handle_iq(stanza, self.actor, None)
        replies = [s for s in self.sent if s.name == "iq" and s["to"] == ACTOR]
        if [r["type"] for r in replies] == ["error"]:
            self.sent.remove(replies[0])
            return error_condition(replies[0])
        if [r["type"] for r in replies] != ["result"]:
            return f"replies: {replies}"
        return OK

    def test_affiliation_changes(self):
        mismatches = []
        cases = 0
        for actor, target, new in itertools.product(PEOPLE, TARGETS_FOR_AFFILIATION, AFFILIATIONS):
            room = self.room_with(actor, target)
            got = self.admin_set(
                room, f"<item jid='target@localhost' affiliation='{new}'><reason>r</reason></item>"
            )
            want = expected_affiliation_change(actor[0], target[0], new)
            cases += 1
            if got != want:
                mismatches.append((actor, target, new, want, got))
                continue
            stored = room.affiliations.get("target@localhost")
            if stored != (new if want == OK else target[0]):
                mismatches.append((actor, target, new, "stored", stored))
            in_room = "Target" in room.occupants
            should_be_in = target[1] is not None and not (want == OK and new == "outcast")
            if in_room != should_be_in:
                mismatches.append((actor, target, new, "in room", in_room))
            if want != OK and self.sent:
                mismatches.append((actor, target, new, "sent on refusal", self.sent))
        self.assertEqual(cases, len(PEOPLE) * len(TARGETS_FOR_AFFILIATION) * len(AFFILIATIONS))
        self.assertEqual(mismatches, [])

    def test_role_changes(self):
        mismatches = []
        occupants = [p for p in PEOPLE if p[1] is not None]
        for actor, target, new in itertools.product(PEOPLE, occupants, ROLES):
            room = self.room_with(actor, target)
            got = self.admin_set(
                room, f"<item nick='Target' role='{new}'><reason>r</reason></item>"
            )
            want = expected_role_change(actor, target, new)
            if got != want:
                mismatches.append((actor, target, new, want, got))
                continue
            occupant = room.occupants.get("Target")
            if want == OK and new == "none":
                ok = occupant is None
            else:
                ok = occupant is not None and occupant.role == (new if want == OK else target[1])
            if not ok:
                mismatches.append((actor, target, new, "state", occupant))
            if want != OK and self.sent:
                mismatches.append((actor, target, new, "sent on refusal", self.sent))
        self.assertEqual(mismatches, [])

    def test_pure_rules_agree_with_the_table(self):
        """The rule functions themselves, over the same product (and bad values)."""
        for actor, old, new in itertools.product(
            ("owner", "admin", "member", "none"), AFFILIATIONS, AFFILIATIONS
        ):
            want = expected_affiliation_change(actor, old, new)
            try:
                aff.check_affiliation_change(actor, old, new)
                got = OK
            except StanzaError as exc:
                got = exc.condition
            self.assertEqual(got, want, (actor, old, new))
        occupants = [p for p in PEOPLE if p[1] is not None]
        for actor, target, new in itertools.product(occupants, occupants, ROLES):
            want = expected_role_change(actor, target, new)
            try:
                aff.check_role_change(actor[1], actor[0], target[1], target[0], new)
                got = OK
            except StanzaError as exc:
                got = exc.condition
            self.assertEqual(got, want, (actor, target, new))
        exc = self.assertRaises(StanzaError, aff.check_affiliation_change, "owner", "none", "king")
        self.assertEqual(exc.condition, "bad-request")
        exc = self.assertRaises(
            StanzaError, aff.check_role_change, "moderator", "owner", "visitor", "none", "jester"
        )
        self.assertEqual(exc.condition, "bad-request")


class LastOwnerTests(unittest.TestCase):
    """XEP-0045 10.7: a room always keeps an owner."""

    def setUp(self):
        self.h = MUCHarness(self)
        self.h.create(CREATOR, "Creator")
        self.room = self.h.service.rooms["room"]

    def admin_set(self, who, items):
        self.h.send(
            who,
            f"<iq type='set' id='x' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>{items}</query></iq>",
        )
        (reply,) = [s for s in self.h.take(who) if s.name == "iq"]
        return OK if reply["type"] == "result" else error_condition(reply)

    def test_sole_owner_cannot_step_down(self):
        for new in ("admin", "member", "none", "outcast"):
            got = self.admin_set(CREATOR, f"<item jid='creator@localhost' affiliation='{new}'/>")
            self.assertEqual(got, "conflict", new)
            self.assertEqual(self.room.affiliations.owners(), ["creator@localhost"])

    def test_one_of_two_owners_may_step_down(self):
        self.assertEqual(
            self.admin_set(CREATOR, "<item jid='actor@localhost' affiliation='owner'/>"), OK
        )
        self.assertEqual(
            self.admin_set(CREATOR, "<item jid='creator@localhost' affiliation='member'/>"), OK
        )
        self.assertEqual(self.room.affiliations.owners(), ["actor@localhost"])
        # and now the other one is the last
        self.assertEqual(
            self.admin_set(ACTOR, "<item jid='actor@localhost' affiliation='none'/>"), "conflict"
        )

    def test_removing_every_owner_in_one_request(self):
        self.admin_set(CREATOR, "<item jid='actor@localhost' affiliation='owner'/>")
        got = self.admin_set(
            CREATOR,
            "<item jid='actor@localhost' affiliation='admin'/>"
            "<item jid='creator@localhost' affiliation='admin'/>",
        )
        self.assertEqual(got, "conflict")
        self.assertEqual(self.room.affiliations.owners(), ["actor@localhost", "creator@localhost"])

    def test_owner_may_demote_the_other_owner(self):
        self.admin_set(CREATOR, "<item jid='actor@localhost' affiliation='owner'/>")
        self.assertEqual(
            self.admin_set(ACTOR, "<item jid='creator@localhost' affiliation='outcast'/>"), OK
        )
        self.assertEqual(self.room.affiliations.owners(), ["actor@localhost"])
        self.assertNotIn("Creator", self.room.occupants)
