"""The room core: occupants, roles, affiliations and broadcasting (XEP-0045).

A :class:`Room` receives the stanzas the service routes to it (already
parsed into sender JID and target nick) and reaches the service only
through its :class:`~xmppd.muc.host.RoomHost`. It does what every room
does: joins, leaves, presence updates, nick changes (one or several
sessions per nick), probes, the relay of groupchat and private messages
(:mod:`xmppd.muc.messages`), requests between occupants
(:mod:`xmppd.muc.forwarding`), and the affiliation and role machinery with
XEP-0045's privilege rules (:mod:`xmppd.muc.affiliations`). Everything a
feature adds is a MUC module (:mod:`xmppd.muc.features`): iqs to the room
go to the modules' handlers (``Scope.ROOM``), and the room fires the
``Point.ROOM_*`` hooks at its points. Room code raises
:class:`~xmppd.errors.StanzaError` for a bad request; the service turns
that into the error reply.

What modules may use of a room (its written-down interface):

* attributes: ``name``, ``jid``, ``config`` (:class:`RoomConfig`),
  ``locked``, ``destroyed``, ``occupants`` (nick -> :class:`Occupant`),
  ``sessions`` (full JID -> Occupant), ``affiliations``
  (:class:`Affiliations`, with reserved nicks), ``subject``,
  ``subject_from`` (the nick), ``subject_by`` (the bare JID),
  ``data`` (per-room state of modules, by module name);
* queries: :meth:`~Room.affiliation_of`, :meth:`~Room.occupant_jid`,
  :meth:`~Room.sees_jids`;
* sending: :meth:`~Room.send`, :meth:`~Room.send_to`,
  :meth:`~Room.send_to_occupants`, :meth:`~Room.broadcast_presence`;
* changes: :meth:`~Room.set_affiliation`, :meth:`~Room.set_role`,
  :meth:`~Room.remove`, :meth:`~Room.configure`, :meth:`~Room.destroy`,
  :meth:`~Room.changed` (store the room).

Broadcasts build each stanza once per variant (with or without real JIDs,
self-presence) and send shallow copies that differ only in 'to'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import Point, Scope
from xmppd.muc import affiliations as aff
from xmppd.muc.affiliations import (
    ADMIN,
    MODERATOR,
    NONE,
    OUTCAST,
    OWNER,
    Affiliations,
)
from xmppd.muc.config import RoomConfig, status_codes_for_change
from xmppd.muc.feature import MUCRequest, answer
from xmppd.muc.forwarding import IqForwarding
from xmppd.muc.messages import groupchat, private_message
from xmppd.muc.nicks import change_nick
from xmppd.muc.occupant import Occupant
from xmppd.muc.outgoing import (
    affiliation_notice,
    destroy_presence,
    occupant_presence,
    shown_presence,
    status_message,
    subject_message,
)
from xmppd.muc.stanzas import (
    NS_MUC,
    NS_MUC_USER,
    child,
    resourceprep_nick,
)
from xmppd.muc.stanzas import bounce_presence as _bounce_presence
from xmppd.muc.stanzas import stored_presence as _stored_presence
from xmppd.stanza import shallow_copy as _copy
from xmppd.stanza import share_children_xml

if TYPE_CHECKING:
    from xmppd.muc.host import RoomHost

log = logger(__name__)


@dataclass
class JoinAttempt:
    """A request to enter a room as a new occupant (what ``Point.ROOM_JOIN_CHECK`` hooks get)."""

    #: The joining session's full JID.
    sender: jid.JID
    #: The nick asked for (resourceprepped).
    nick: str
    #: The user's affiliation with the room.
    affiliation: str
    #: The join's ``<x xmlns='http://jabber.org/protocol/muc'/>``, or None.
    muc_x: domish.Element | None
    #: The join presence itself.
    stanza: domish.Element

    @property
    def bare(self) -> str:
        """The joining user's bare JID."""
        return self.sender.userhost()


class Room:
    """One room of the MUC service (see the module docstring for its interface)."""

    def __init__(
        self,
        host: RoomHost,
        name: str,
        config: RoomConfig | None = None,
        *,
        locked: bool = False,
    ) -> None:
        self.host = host
        self.name = name
        self.jid = f"{name}@{host.domain}"
        self.config = config or RoomConfig()
        self.locked = locked
        self.destroyed = False
        self.occupants: dict[str, Occupant] = {}
        self.sessions: dict[str, Occupant] = {}
        self.affiliations = Affiliations()
        self.subject = ""
        self.subject_from: str | None = None
        #: The bare JID of whoever set the subject.
        self.subject_by: str | None = None
        #: Requests passed on between occupants, waiting for their answer.
        self.forwarding = IqForwarding()
        #: Per-room state of the feature modules, by module name.
        self.data: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Room {self.jid} occupants={len(self.occupants)} locked={self.locked}>"

    # ------------------------------------------------------------------ queries

    def affiliation_of(self, bare: str) -> str:
        """A user's affiliation; service admins are owners of every room."""
        if self.host.is_admin(bare):
            return OWNER
        return self.affiliations.get(bare)

    def changed(self) -> None:
        """Have the service store the room's state (persistent rooms only)."""
        self.host.room_changed(self)

    def occupant_jid(self, nick: str) -> str:
        """The room JID of a nick (room@service/nick)."""
        return f"{self.jid}/{nick}"

    def sees_jids(self, occupant: Occupant) -> bool:
        """Whether an occupant sees the others' real JIDs (moderators, or everyone)."""
        return self.config.whois == "anyone" or occupant.role == MODERATOR

    def send(self, element: domish.Element) -> None:
        """Send an addressed stanza."""
        self.host.send(element)

    def send_to(self, element: domish.Element, to: str) -> None:
        """Send a shallow copy of ``element`` addressed to ``to``."""
        copy = _copy(element)
        copy["to"] = to
        self.host.send(copy)

    def send_to_occupants(self, element: domish.Element, occupants: Iterable[Occupant]) -> None:
        """Send ``element`` to every session of these occupants (its children written once)."""
        share_children_xml(element)
        for occupant in list(occupants):
            for session in list(occupant.sessions):
                self.send_to(element, session)

    # ------------------------------------------------------------- broadcasting

    def broadcast_presence(
        self,
        occupant: Occupant,
        *,
        visible: bool | None = None,
        self_sessions: Iterable[str] | None = None,
        others: bool = True,
        **spec,
    ) -> None:
        """Send an occupant's presence to the room (self-presence to itself).

        ``visible`` (default: the role is in ``presence_broadcast``) decides
        whether the others get it; ``self_sessions`` are the occupant's
        sessions that get the self-presence (default: all); ``spec`` is
        what :func:`~xmppd.muc.outgoing.occupant_presence` takes (codes,
        reason, actor, ...).
        """
        if visible is None:
            visible = occupant.role in self.config.presence_broadcast
        variants: dict[tuple[bool, bool], domish.Element] = {}
        for recipient in list(self.occupants.values()):
            is_self = recipient is occupant
            if is_self:
                sessions = list(self_sessions if self_sessions is not None else recipient.sessions)
            elif others and visible:
                sessions = list(recipient.sessions)
            else:
                continue
            if not sessions:
                continue
            with_jid = is_self or self.sees_jids(recipient)
            key = (with_jid, is_self)
            element = variants.get(key)
            if element is None:
                element = occupant_presence(
                    self, occupant, with_jid=with_jid, is_self=is_self, **spec
                )
                share_children_xml(element)
                variants[key] = element
            for session in sessions:
                self.send_to(element, session)

    # ----------------------------------------------------------------- presence

    def handle_presence(self, stanza: domish.Element, sender: jid.JID, nick: str | None) -> None:
        """Joins, leaves, presence updates, nick changes and probes."""
        full = sender.full()
        kind = stanza.getAttribute("type")
        occupant = self.sessions.get(full)
        if kind == "unavailable":
            if occupant is not None:
                self._leave(occupant, full, stanza)
            return
        if kind == "error":
            if occupant is not None:
                self._leave(occupant, full, _bounce_presence(stanza), codes=("333",))
            return
        if kind == "probe":
            self._probe(occupant, full, nick)
            return
        if kind is not None:
            return  # subscriptions and the like are not for rooms
        if occupant is None:
            if nick is None:
                raise StanzaError("jid-malformed", "a nickname is required to join")
            self.join(stanza, sender, resourceprep_nick(nick))
        elif nick is None or nick == occupant.nick:
            occupant.set_presence(full, _stored_presence(stanza))
            muc_x = child(stanza, "x", NS_MUC)
            if muc_x is not None and nick is not None:
                # a join from a session already in the room: it lost its state, send it again
                self._send_join_state(occupant, full, muc_x)
            else:
                self.broadcast_presence(occupant)
        else:
            change_nick(self, occupant, full, stanza, resourceprep_nick(nick))

    def join(
        self, stanza: domish.Element, sender: jid.JID, nick: str, created: bool = False
    ) -> None:
        """Admit a session to the room (or raise the StanzaError that refuses it)."""
        full, bare = sender.full(), sender.userhost()
        affiliation = self.affiliation_of(bare)
        if self.locked and affiliation != OWNER:
            raise StanzaError("item-not-found", "the room is locked")
        if affiliation == OUTCAST:
            raise StanzaError("forbidden", "you are banned from this room")
        existing = self.occupants.get(nick)
        same_user = existing is not None and existing.bare == bare
        muc_x = child(stanza, "x", NS_MUC)
        if not same_user:
            attempt = JoinAttempt(sender, nick, affiliation, muc_x, stanza)
            self.host.modules.fire(Point.ROOM_JOIN_CHECK, self, attempt)
            if existing is not None:
                raise StanzaError("conflict", "that nickname is in use")
            registered = self.affiliations.nick_owner(nick)
            if registered is not None and registered != bare:
                raise StanzaError("conflict", "that nickname is reserved")
            limit = self.config.max_users
            if (
                limit is not None
                and len(self.occupants) >= limit
                and affiliation not in (OWNER, ADMIN)
            ):
                raise StanzaError("service-unavailable", "the room is full", type="wait")
        presence = _stored_presence(stanza)
        if same_user:
            occupant = existing
        else:
            role = aff.default_role(affiliation, self.config.moderated)
            occupant = Occupant(nick, bare, role)
            self.occupants[nick] = occupant
        occupant.set_presence(full, presence)
        self.sessions[full] = occupant

        self._send_join_state(occupant, full, muc_x, created)

    def _send_join_state(
        self, occupant: Occupant, full: str, muc_x: domish.Element | None, created: bool = False
    ) -> None:
        """Occupants, self-presence (others get the joiner's), the modules' (history), subject."""
        # 1. the others' presence to the joining session
        sees = self.sees_jids(occupant)
        for other in list(self.occupants.values()):
            if other is occupant or other.role not in self.config.presence_broadcast:
                continue
            self.send_to(shown_presence(self, other, sees), full)
        # 2. the joiner's presence to the others, 3. its self-presence
        self_codes = []
        if self.config.non_anonymous:
            self_codes.append("100")
        if self.config.logging:
            self_codes.append("170")
        self.broadcast_presence(
            occupant,
            self_sessions=[full],
            pre_codes=("201",) if created else (),
            self_codes=self_codes,
        )
        # 4. what modules send (the history), 5. the subject
        self.host.modules.fire(Point.ROOM_JOINED, self, occupant, full, muc_x)
        subject = subject_message(self)
        self.host.modules.fire(Point.ROOM_SUBJECT, self, subject)
        self.send_to(subject, full)

    def _leave(
        self,
        occupant: Occupant,
        full: str,
        stanza: domish.Element | None,
        codes: Iterable[str] = (),
    ) -> None:
        base = _stored_presence(stanza)
        if len(occupant.sessions) > 1:
            element = occupant_presence(
                self,
                occupant,
                with_jid=True,
                is_self=True,
                unavailable=True,
                base=base,
                role=NONE,
                session=full,
                codes=codes,
            )
            self.send_to(element, full)
            occupant.remove_session(full)
            del self.sessions[full]
            self.broadcast_presence(occupant)
            return
        self.remove(occupant, base=base, codes=codes)

    def remove(
        self,
        occupant: Occupant,
        *,
        base: domish.Element | None = None,
        codes: Iterable[str] = (),
        reason: str | None = None,
        actor: str | None = None,
        affiliation: str | None = None,
    ) -> None:
        """Take an occupant out of the room with an unavailable broadcast."""
        visible = occupant.role in self.config.presence_broadcast
        occupant.role = NONE
        self.broadcast_presence(
            occupant,
            visible=visible,
            unavailable=True,
            base=base if base is not None else _stored_presence(None),
            codes=codes,
            reason=reason,
            actor=actor,
            affiliation=affiliation,
        )
        self.occupants.pop(occupant.nick, None)
        for session in occupant.sessions:
            self.sessions.pop(session, None)
        if not self.occupants:
            self.host.room_emptied(self)

    def _probe(self, occupant: Occupant | None, full: str, nick: str | None) -> None:
        """Answer a presence probe to an occupant JID (XEP-0045 7.2, as Prosody answers).

        Only occupants may probe (``not-acceptable`` otherwise, which tells a
        client that lost track of the room that it is out). The answer, to
        the probing session, is the occupant's current presence with its
        item as the prober may see it (the real JID when it may see JIDs;
        its own always), without status codes; for a nick nobody holds (or
        whose presence the room does not show the prober) an unavailable
        presence with role none, naming the user who registered the nick.
        A probe to the room's bare JID is ignored.
        """
        if occupant is None:
            raise StanzaError("not-acceptable", "you are not in the room", type="cancel")
        if nick is None:
            return
        is_self = nick == occupant.nick
        sees = self.sees_jids(occupant)
        target = self.occupants.get(nick)
        if target is not None and (
            is_self
            or target.role in self.config.presence_broadcast
            or occupant.role == MODERATOR
        ):
            element = occupant_presence(
                self,
                target,
                with_jid=is_self or sees,
                is_self=False,
                session=full if is_self else None,
            )
        else:
            element = _absent_presence(self, nick, sees)
        self.send_to(element, full)

    # ----------------------------------------------------------------- messages

    def handle_message(self, stanza: domish.Element, sender: jid.JID, nick: str | None) -> None:
        """Groupchat and private messages; others go to the modules (invitations, voice)."""
        full = sender.full()
        occupant = self.sessions.get(full)
        kind = stanza.getAttribute("type", "normal")
        if kind == "error":
            # the occupant's client bounced something the room sent it: it is gone
            if occupant is not None:
                self._leave(occupant, full, _bounce_presence(stanza), codes=("333",))
            return
        if self.locked and self.affiliation_of(sender.userhost()) != OWNER:
            raise StanzaError("item-not-found")
        if nick is not None:
            private_message(self, stanza, occupant, nick, kind)
            return
        if kind == "groupchat":
            groupchat(self, stanza, occupant)
            return
        if self.host.modules.fire(Point.ROOM_DIRECT_MESSAGE, self, sender, occupant, stanza):
            return
        if occupant is None:
            raise StanzaError("not-acceptable", "you are not in the room")
        raise StanzaError("bad-request", "messages to the room must be of type groupchat")

    # ---------------------------------------------------------------------- iq

    def handle_iq(self, stanza: domish.Element, sender: jid.JID, nick: str | None) -> None:
        """Requests to the room (answered by the MUC modules' handlers) or to an occupant.

        Answers of occupants to forwarded requests go back to the requester.
        """
        kind = stanza.getAttribute("type")
        if kind in ("result", "error"):
            if nick is not None:
                self.forwarding.answered(self, stanza, sender)
            return
        if kind not in ("get", "set"):
            raise StanzaError("bad-request")
        if self.locked and self.affiliation_of(sender.userhost()) != OWNER:
            raise StanzaError("item-not-found")
        if nick is not None:
            self.forwarding.forward(self, stanza, sender, nick)
            return
        query = stanza.firstChildElement()
        if query is None:
            raise StanzaError("bad-request")
        modules = self.host.modules
        handler = modules.iq_handler(kind, query, Scope.ROOM)
        if handler is None:
            raise StanzaError("service-unavailable")
        request = MUCRequest(stanza, sender, jid.JID(self.jid), query, Scope.ROOM, None, self)
        answer(modules, handler, request, self.host.send, self.jid, self.host.domain)

    # --------------------------------------------------- configuration, destruction

    def configure(self, new: RoomConfig) -> None:
        """Put a new configuration in force (its owner has had the iq result).

        Unlocks the room; a change is announced to the occupants (104,
        170-174) and handed to the modules (``Point.ROOM_CONFIG_CHANGED``);
        then the service stores, deletes or forgets the room.
        """
        old = self.config
        codes = status_codes_for_change(old, new)
        self.config = new
        self.locked = False
        if codes:
            self.send_to_occupants(status_message(self, codes), self.occupants.values())
            self.host.modules.fire(Point.ROOM_CONFIG_CHANGED, self, old)
        if self.destroyed:
            return
        self.host.room_configured(self, old)

    def destroy(
        self, reason: str | None = None, alternate: str | None = None, password: str | None = None
    ) -> None:
        """Destroy the room: every occupant gets unavailable with ``<destroy/>``."""
        if self.destroyed:
            return
        self.destroyed = True
        for occupant in list(self.occupants.values()):
            presence = destroy_presence(self, occupant, reason, alternate, password)
            self.send_to_occupants(presence, [occupant])
        self.occupants.clear()
        self.sessions.clear()
        self.host.room_destroyed(self)

    # ------------------------------------------------------ affiliations and roles

    def set_affiliation(
        self, bare: str, affiliation: str, *, reason: str | None = None, actor: str | None = None
    ) -> None:
        """Change a user's affiliation and update its occupants (301, 321 removals)."""
        self.affiliations.set(bare, affiliation, reason)
        affected = [o for o in self.occupants.values() if o.bare == bare]
        for occupant in affected:
            if affiliation == OUTCAST:
                self.remove(
                    occupant, codes=("301",), reason=reason, actor=actor, affiliation=OUTCAST
                )
            elif self.config.members_only and affiliation == NONE:
                self.remove(occupant, codes=("321",), reason=reason, actor=actor, affiliation=NONE)
            else:
                occupant.role = aff.default_role(affiliation, self.config.moderated)
                self.broadcast_presence(occupant, reason=reason, actor=actor)
        if not affected and not self.destroyed:
            self._announce_affiliation(bare, affiliation, reason)
        self.changed()

    def _announce_affiliation(self, bare: str, affiliation: str, reason: str | None) -> None:
        """Tell the occupants who see real JIDs of a change for a user not in the room.

        As Prosody does: the notice names the user by bare JID, so in a
        semi-anonymous room only the moderators get it (a notice naming
        nobody would tell the others nothing). A ban carries 301, a
        removal from a members-only room 321.
        """
        if affiliation == OUTCAST:
            codes: tuple[str, ...] = ("301",)
        elif affiliation == NONE and self.config.members_only:
            codes = ("321",)
        else:
            codes = ()
        recipients = [o for o in self.occupants.values() if self.sees_jids(o)]
        if not recipients:
            return
        message = affiliation_notice(self, bare, affiliation, codes=codes, reason=reason)
        self.send_to_occupants(message, recipients)

    def set_role(
        self, occupant: Occupant, role: str, *, reason: str | None = None, actor: str | None = None
    ) -> None:
        """Change an occupant's role (kick with 307 when the role is none)."""
        if occupant.nick not in self.occupants:
            return
        if role == NONE:
            self.remove(occupant, codes=("307",), reason=reason, actor=actor)
            return
        occupant.role = role
        self.broadcast_presence(occupant, reason=reason, actor=actor)

    # ------------------------------------------------------------- persistence

    def to_record(self) -> dict:
        """The persistent state (configuration, affiliations, subject)."""
        return {
            "config": self.config.to_dict(),
            "subject": self.subject,
            "subject_from": self.subject_from,
            "subject_by": self.subject_by,
            "affiliations": [(e.jid, e.affiliation, e.reason, e.nick) for e in self.affiliations],
        }


def _absent_presence(room: Room, nick: str, with_jid: bool) -> domish.Element:
    """The unavailable presence that answers a probe for a nick nobody holds."""
    presence = domish.Element((None, "presence"))
    presence["from"] = room.occupant_jid(nick)
    presence["type"] = "unavailable"
    item = presence.addElement((NS_MUC_USER, "x")).addElement("item")
    owner = room.affiliations.nick_owner(nick)
    if owner is not None and with_jid:
        item["jid"] = owner
    item["affiliation"] = room.affiliation_of(owner) if owner is not None else NONE
    item["role"] = NONE
    if owner is not None:
        item["nick"] = nick
    return presence
