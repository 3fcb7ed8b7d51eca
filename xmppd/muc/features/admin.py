"""Affiliation and role lists (XEP-0045 8, 9, 10): muc#admin.

* get: the users of one affiliation (owners read every list, admins
  those below owner, members of a non-anonymous room who belongs to it),
  or the occupants of one role (moderators only);
* set: one or more affiliation or role changes, checked all together by
  XEP-0045's privilege rules (:mod:`xmppd.muc.affiliations`; the room
  keeps at least one owner) before any is made. The room core makes them
  (:meth:`Room.set_affiliation`, :meth:`Room.set_role`): affiliation
  changes of users not in the room before the result (their notices go
  out first, as Prosody sends them), the others after it.
"""

from __future__ import annotations

from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.module import Scope, iq_handler
from xmppd.muc import affiliations as aff
from xmppd.muc.affiliations import ADMIN, MEMBER, MODERATOR, NONE, OWNER, PARTICIPANT, VISITOR
from xmppd.muc.feature import MUCModule, MUCRequest
from xmppd.muc.room import Room
from xmppd.muc.stanzas import NS_MUC_ADMIN, child, parse_jid


class Admin(MUCModule):
    """muc#admin: reading and changing affiliations and roles."""

    name = "admin"

    @iq_handler("get", NS_MUC_ADMIN, "query", Scope.ROOM)
    def read_list(self, request: MUCRequest) -> domish.Element:
        """The users with one affiliation, or the occupants with one role."""
        room = request.room
        items = list(request.payload.elements(NS_MUC_ADMIN, "item"))
        if len(items) != 1:
            raise StanzaError("bad-request")
        wanted_affiliation = items[0].getAttribute("affiliation")
        wanted_role = items[0].getAttribute("role")
        if wanted_affiliation is not None:
            return _affiliation_list(room, request, wanted_affiliation)
        if wanted_role is not None:
            return _role_list(room, request, wanted_role)
        raise StanzaError("bad-request")

    @iq_handler("set", NS_MUC_ADMIN, "query", Scope.ROOM)
    def change(self, request: MUCRequest) -> None:
        """Check every change of the request, then (after the result) make them."""
        room = request.room
        items = list(request.payload.elements(NS_MUC_ADMIN, "item"))
        if not items:
            raise StanzaError("bad-request")
        actor_affiliation = room.affiliation_of(request.sender.userhost())
        actor = room.sessions.get(request.sender.full())
        changes: list[tuple] = []
        owners = set(room.affiliations.owners())
        for item in items:
            reason_element = child(item, "reason", NS_MUC_ADMIN)
            reason = str(reason_element) if reason_element is not None else None
            new_affiliation = item.getAttribute("affiliation")
            new_role = item.getAttribute("role")
            if new_affiliation is not None:
                target = _item_target(room, item)
                old = room.affiliations.get(target)
                aff.check_affiliation_change(actor_affiliation, old, new_affiliation)
                if old == OWNER and new_affiliation != OWNER:
                    owners.discard(target)
                    if not owners:
                        raise StanzaError("conflict", "a room needs at least one owner")
                if new_affiliation == OWNER:
                    owners.add(target)
                changes.append(("affiliation", target, new_affiliation, reason))
            elif new_role is not None:
                nick = item.getAttribute("nick")
                if not nick:
                    raise StanzaError("bad-request", "a nick is required to change a role")
                target_occupant = room.occupants.get(nick)
                if target_occupant is None:
                    raise StanzaError("item-not-found", "no such occupant")
                if actor is None:
                    raise StanzaError("forbidden")
                aff.check_role_change(
                    actor.role,
                    actor_affiliation,
                    target_occupant.role,
                    room.affiliation_of(target_occupant.bare),
                    new_role,
                )
                changes.append(("role", target_occupant, new_role, reason))
            else:
                raise StanzaError("bad-request")
        actor_nick = actor.nick if actor is not None else None
        present = {occupant.bare for occupant in room.occupants.values()}
        # changes for users not in the room are made now: their notices
        # reach the occupants before the result (as Prosody sends them)
        later = []
        for change in changes:
            kind, target, value, reason = change
            if kind == "affiliation" and target not in present:
                room.set_affiliation(target, value, reason=reason, actor=actor_nick)
            else:
                later.append(change)

        def make_changes() -> None:
            for kind, target, value, reason in later:
                if kind == "affiliation":
                    room.set_affiliation(target, value, reason=reason, actor=actor_nick)
                else:
                    room.set_role(target, value, reason=reason, actor=actor_nick)

        request.after_reply(make_changes)
        return None


def _affiliation_list(room: Room, request: MUCRequest, wanted: str) -> domish.Element:
    if wanted not in aff.AFFILIATIONS or wanted == NONE:
        raise StanzaError("bad-request")
    affiliation = room.affiliation_of(request.sender.userhost())
    # owners read every list, admins those up to their own rank (as Prosody
    # does: not the owner list); members in non-anonymous rooms may see who
    # belongs to the room
    allowed = (
        affiliation == OWNER
        or (affiliation == ADMIN and wanted != OWNER)
    ) or (
        affiliation == MEMBER
        and room.config.non_anonymous
        and wanted in (MEMBER, ADMIN, OWNER)
    )
    if not allowed:
        raise StanzaError("forbidden")
    payload = domish.Element((NS_MUC_ADMIN, "query"))
    for entry in room.affiliations.with_affiliation(wanted):
        item = payload.addElement("item")
        item["affiliation"] = entry.affiliation
        item["jid"] = entry.jid
        if entry.nick:
            item["nick"] = entry.nick
        if entry.reason:
            item.addElement("reason", content=entry.reason)
    return payload


def _role_list(room: Room, request: MUCRequest, wanted: str) -> domish.Element:
    if wanted not in (MODERATOR, PARTICIPANT, VISITOR):
        raise StanzaError("bad-request")
    occupant = room.sessions.get(request.sender.full())
    if occupant is None or occupant.role != MODERATOR:
        raise StanzaError("forbidden")
    payload = domish.Element((NS_MUC_ADMIN, "query"))
    for other in sorted(room.occupants.values(), key=lambda o: o.nick):
        if other.role != wanted:
            continue
        item = payload.addElement("item")
        item["affiliation"] = room.affiliation_of(other.bare)
        item["role"] = other.role
        item["nick"] = other.nick
        item["jid"] = other.session
    return payload


def _item_target(room: Room, item: domish.Element) -> str:
    """The bare JID an affiliation item is about (by jid, or an occupant's nick)."""
    if item.getAttribute("jid"):
        return parse_jid(item["jid"]).userhost()
    nick = item.getAttribute("nick")
    if nick and nick in room.occupants:
        return room.occupants[nick].bare
    raise StanzaError("bad-request", "a jid is required to change an affiliation")
