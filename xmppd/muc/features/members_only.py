"""Members-only rooms (XEP-0045 7.2.5, 9.3, 9.8).

* The ``membersonly`` configuration field.
* A user without an affiliation is refused ``registration-required``
  (checked before the password: a non-member need not guess it).
* Making a room members-only removes the occupants who are not members
  (status 322). (That losing membership in a members-only room removes the
  occupant, 321, is the room core's affiliation rule.)
* Disco: ``muc_membersonly`` or ``muc_open``.
"""

from __future__ import annotations

from xmppd.errors import StanzaError
from xmppd.module import Point, Scope, hook
from xmppd.muc.affiliations import AFFILIATION_RANK, NONE
from xmppd.muc.config import ConfigField, RoomConfig, boolean_field
from xmppd.muc.feature import MUCModule
from xmppd.muc.room import JoinAttempt, Room

FIELD = boolean_field("membersonly", "Only members may join", 60, "members_only")


class MembersOnly(MUCModule):
    """Only members (and admins, owners) enter a members-only room."""

    name = "members-only"
    #: Switched off, rooms configured closed would let anyone in.
    essential = True

    def disco_features(self, scope: Scope, target: Room | None = None) -> list[str]:
        """muc_membersonly or muc_open."""
        if scope is not Scope.ROOM or target is None:
            return []
        return ["muc_membersonly" if target.config.members_only else "muc_open"]

    @hook(Point.ROOM_CONFIG_FORM)
    def fields(self, room: Room, fields: list[ConfigField]) -> None:
        """The membersonly field."""
        fields.append(FIELD)

    @hook(Point.ROOM_JOIN_CHECK, priority=20)
    def check(self, room: Room, attempt: JoinAttempt) -> None:
        """Refuse users without an affiliation (registration-required)."""
        if room.config.members_only and AFFILIATION_RANK[attempt.affiliation] < 1:
            raise StanzaError("registration-required", "the room is members-only")

    @hook(Point.ROOM_CONFIG_CHANGED)
    def close_the_doors(self, room: Room, old: RoomConfig) -> None:
        """A room that became members-only removes its non-members (322)."""
        if not room.config.members_only or old.members_only:
            return
        for occupant in list(room.occupants.values()):
            if AFFILIATION_RANK[room.affiliation_of(occupant.bare)] < 1:
                room.remove(occupant, codes=("322",), affiliation=NONE)
