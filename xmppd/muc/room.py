"""A chat room: occupants, roles and affiliations, configuration, messages.

A :class:`Room` receives the stanzas the service routes to it (already
parsed into sender JID and target nick) and reaches the service only
through its :class:`~xmppd.muc.host.RoomHost`. Room code raises
:class:`~xmppd.errors.StanzaError` for a bad request; the service turns
that into the error reply. Iqs to the room go to the MUC feature modules'
handlers (``Scope.ROOM``).

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
    PARTICIPANT,
    VISITOR,
    Affiliations,
)
from xmppd.muc.config import RoomConfig, status_codes_for_change
from xmppd.muc.feature import MUCRequest, answer
from xmppd.muc.occupant import Occupant
from xmppd.muc.stanzas import (
    NS_MUC,
    NS_MUC_USER,
    NS_PING,
    child,
    resourceprep_nick,
)
from xmppd.muc.stanzas import bounce_presence as _bounce_presence
from xmppd.muc.stanzas import new_id as _new_id
from xmppd.muc.stanzas import shallow_copy as _copy
from xmppd.muc.stanzas import stored_presence as _stored_presence

if TYPE_CHECKING:
    from xmppd.muc.host import RoomHost

log = logger(__name__)

MAX_PENDING_IQS = 1000


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
    """One room of the MUC service."""

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
        self.pending_iqs: dict[str, tuple[str | None, str, str]] = {}
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

    def _sees_jids(self, occupant: Occupant) -> bool:
        return self.config.whois == "anyone" or occupant.role == MODERATOR

    def send(self, element: domish.Element) -> None:
        self.host.send(element)

    def send_to(self, element: domish.Element, to: str) -> None:
        copy = _copy(element)
        copy["to"] = to
        self.host.send(copy)

    def send_to_occupants(self, element: domish.Element, occupants: Iterable[Occupant]) -> None:
        for occupant in list(occupants):
            for session in list(occupant.sessions):
                self.send_to(element, session)

    def _result(self, iq: domish.Element, payload: domish.Element | None = None) -> None:
        reply = domish.Element((None, "iq"))
        reply["type"] = "result"
        reply["to"] = iq["from"]
        reply["from"] = iq.getAttribute("to") or self.jid
        if iq.getAttribute("id") is not None:
            reply["id"] = iq["id"]
        if payload is not None:
            reply.addChild(payload)
        self.send(reply)

    # ----------------------------------------------------------- presence build

    def _occupant_presence(
        self,
        occupant: Occupant,
        *,
        with_jid: bool,
        is_self: bool,
        unavailable: bool = False,
        base: domish.Element | None = None,
        role: str | None = None,
        affiliation: str | None = None,
        session: str | None = None,
        pre_codes: Iterable[str] = (),
        codes: Iterable[str] = (),
        self_codes: Iterable[str] = (),
        reason: str | None = None,
        actor: str | None = None,
        new_nick: str | None = None,
    ) -> domish.Element:
        presence = domish.Element((None, "presence"))
        presence["from"] = self.occupant_jid(occupant.nick)
        if unavailable:
            presence["type"] = "unavailable"
        source = base if base is not None else occupant.presence
        if source is not None:
            presence.children.extend(source.children)
        x = presence.addElement((NS_MUC_USER, "x"))
        for code in pre_codes:
            x.addElement("status")["code"] = code
        item = x.addElement("item")
        if with_jid:
            item["jid"] = session or occupant.session
        item["affiliation"] = affiliation or self.affiliation_of(occupant.bare)
        item["role"] = role or occupant.role
        if new_nick is not None:
            item["nick"] = new_nick
        if actor is not None:
            item.addElement("actor")["nick"] = actor
        if reason:
            item.addElement("reason", content=reason)
        for code in codes:
            x.addElement("status")["code"] = code
        if is_self:
            for code in self_codes:
                x.addElement("status")["code"] = code
            x.addElement("status")["code"] = "110"
        return presence

    def broadcast_presence(
        self,
        occupant: Occupant,
        *,
        visible: bool | None = None,
        self_sessions: Iterable[str] | None = None,
        others: bool = True,
        **spec,
    ) -> None:
        """Send an occupant's presence to the room (self-presence to itself)."""
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
            with_jid = is_self or self._sees_jids(recipient)
            key = (with_jid, is_self)
            element = variants.get(key)
            if element is None:
                element = self._occupant_presence(
                    occupant, with_jid=with_jid, is_self=is_self, **spec
                )
                variants[key] = element
            for session in sessions:
                self.send_to(element, session)

    def _status_message(self, codes: Iterable[str]) -> None:
        message = domish.Element((None, "message"))
        message["type"] = "groupchat"
        message["from"] = self.jid
        message["id"] = _new_id()
        x = message.addElement((NS_MUC_USER, "x"))
        for code in codes:
            x.addElement("status")["code"] = code
        self.send_to_occupants(message, self.occupants.values())

    def _subject_message(self) -> domish.Element:
        message = domish.Element((None, "message"))
        message["type"] = "groupchat"
        if self.subject and self.subject_from:
            message["from"] = self.occupant_jid(self.subject_from)
        else:
            message["from"] = self.jid
        message["id"] = _new_id()
        message.addElement("subject", content=self.subject or None)
        return message

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
                self.broadcast_presence(occupant, session=full)
        else:
            self._change_nick(occupant, full, stanza, resourceprep_nick(nick))

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
        """Occupants, self-presence (others get the joiner's), history, subject."""
        # 1. the others' presence to the joining session
        sees = self._sees_jids(occupant)
        for other in list(self.occupants.values()):
            if other is occupant or other.role not in self.config.presence_broadcast:
                continue
            self.send_to(self._occupant_presence(other, with_jid=sees, is_self=False), full)
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
            session=full,
        )
        # 4. what modules send (the history), 5. the subject
        self.host.modules.fire(Point.ROOM_JOINED, self, occupant, full, muc_x)
        self.send_to(self._subject_message(), full)

    def _leave(
        self,
        occupant: Occupant,
        full: str,
        stanza: domish.Element | None,
        codes: Iterable[str] = (),
    ) -> None:
        base = _stored_presence(stanza)
        if len(occupant.sessions) > 1:
            element = self._occupant_presence(
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
        self_only: bool = False,
    ) -> None:
        """Take an occupant out of the room with an unavailable broadcast."""
        visible = occupant.role in self.config.presence_broadcast
        occupant.role = NONE
        self.broadcast_presence(
            occupant,
            visible=visible,
            others=not self_only,
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

    def _change_nick(
        self, occupant: Occupant, full: str, stanza: domish.Element, new_nick: str
    ) -> None:
        """A session asks for another nick (XEP-0045 7.6).

        The usual case (the occupant's only session, a free nick) is the 303
        nick change every occupant sees. A session of an occupant with
        several, or a session moving to a nick its user already holds, moves
        alone (as Prosody does): it sees itself change nick (303 + 110), the
        others see the old occupant stay (or leave) and the session appear
        under the new nick.
        """
        target = self.occupants.get(new_nick)
        if target is not None and target.bare != occupant.bare:
            raise StanzaError("conflict", "that nickname is in use")
        registered = self.affiliations.nick_owner(new_nick)
        if registered is not None and registered != occupant.bare:
            raise StanzaError("conflict", "that nickname is reserved")
        if target is None and len(occupant.sessions) == 1:
            self.broadcast_presence(
                occupant,
                unavailable=True,
                base=_stored_presence(None),
                codes=("303",),
                new_nick=new_nick,
            )
            del self.occupants[occupant.nick]
            occupant.nick = new_nick
            self.occupants[new_nick] = occupant
            occupant.set_presence(full, _stored_presence(stanza))
            self.broadcast_presence(occupant, session=full)
            return
        self._split_session(occupant, full, stanza, new_nick, target)

    def _split_session(
        self,
        occupant: Occupant,
        full: str,
        stanza: domish.Element,
        new_nick: str,
        target: Occupant | None,
    ) -> None:
        """Move one session of ``occupant`` to ``new_nick`` (a new or a same-user occupant)."""
        # 1. the moving session sees its old nick go, as a nick change
        element = self._occupant_presence(
            occupant,
            with_jid=True,
            is_self=True,
            unavailable=True,
            base=_stored_presence(None),
            session=full,
            codes=("303",),
            new_nick=new_nick,
        )
        self.send_to(element, full)
        occupant.remove_session(full)
        del self.sessions[full]
        # 2. the others (and the remaining sessions) see the old occupant stay, or leave
        if occupant.sessions:
            self.broadcast_presence(occupant)
        else:
            self.broadcast_presence(
                occupant,
                self_sessions=(),
                unavailable=True,
                base=_stored_presence(None),
                role=NONE,
            )
            del self.occupants[occupant.nick]
        # 3. the session appears under the new nick
        if target is None:
            target = Occupant(new_nick, occupant.bare, occupant.role)
            target.bucket = occupant.bucket
            self.occupants[new_nick] = target
        target.set_presence(full, _stored_presence(stanza))
        self.sessions[full] = target
        self.broadcast_presence(target, session=full)
        # 4. the moving session still sees its other sessions' occupant
        if occupant.sessions:
            self.send_to(self._occupant_presence(occupant, with_jid=True, is_self=False), full)

    def _probe(self, occupant: Occupant | None, full: str, nick: str | None) -> None:
        if occupant is None:
            return
        target = self.occupants.get(nick) if nick is not None else None
        if target is None:
            return
        element = self._occupant_presence(
            target,
            with_jid=target is occupant or self._sees_jids(occupant),
            is_self=target is occupant,
        )
        self.send_to(element, full)

    # ----------------------------------------------------------------- messages

    def handle_message(self, stanza: domish.Element, sender: jid.JID, nick: str | None) -> None:
        """Groupchat, private messages, invitations, declines, voice requests."""
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
            self._private_message(stanza, occupant, nick, kind)
            return
        if kind == "groupchat":
            self._groupchat(stanza, occupant)
            return
        if self.host.modules.fire(Point.ROOM_DIRECT_MESSAGE, self, sender, occupant, stanza):
            return
        if occupant is None:
            raise StanzaError("not-acceptable", "you are not in the room")
        raise StanzaError("bad-request", "messages to the room must be of type groupchat")

    def _relay_copy(self, stanza: domish.Element, nick: str) -> domish.Element:
        message = domish.Element((None, "message"))
        for key, value in stanza.attributes.items():
            if key not in ("to", "from"):
                message[key] = value
        message["from"] = self.occupant_jid(nick)
        for element in stanza.elements():
            if element.uri != NS_MUC_USER:
                message.children.append(element)
        return message

    def _groupchat(self, stanza: domish.Element, occupant: Occupant | None) -> None:
        if occupant is None:
            raise StanzaError("not-acceptable", "only occupants may send messages to the room")
        if occupant.role == VISITOR:
            raise StanzaError("forbidden", "you have no voice in this room")
        self._rate_limit(occupant)
        subject = child(stanza, "subject")
        body = child(stanza, "body")
        message = self._relay_copy(stanza, occupant.nick)
        if subject is not None and body is None:
            if not self.may_change_subject(occupant):
                raise StanzaError("forbidden", "you may not change the subject")
            self.subject = str(subject)
            self.subject_from = occupant.nick
            self.send_to_occupants(message, self.occupants.values())
            self.changed()
        else:
            self.send_to_occupants(message, self.occupants.values())
        self.host.modules.fire(Point.ROOM_MESSAGE, self, occupant, message)

    def _rate_limit(self, occupant: Occupant) -> None:
        """Refuse a message when the occupant's token bucket is empty."""
        if occupant.bucket is None:
            occupant.bucket = self.host.message_bucket()
        if not occupant.bucket.take():
            log.info(
                "room {room}: message from {user} refused by the rate limit",
                room=self.jid,
                user=occupant.bare,
            )
            raise StanzaError("resource-constraint", "you are sending messages too fast")

    def may_change_subject(self, occupant: Occupant) -> bool:
        """Moderators always; participants when the room allows it."""
        if occupant.role == MODERATOR:
            return True
        return self.config.change_subject and occupant.role == PARTICIPANT

    def _private_message(
        self, stanza: domish.Element, occupant: Occupant | None, nick: str, kind: str
    ) -> None:
        if occupant is None:
            raise StanzaError("not-acceptable", "only occupants may send private messages")
        if kind == "groupchat":
            raise StanzaError("bad-request", "groupchat messages go to the room")
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "no such occupant")
        allow = self.config.allow_pm
        role = occupant.role
        if (
            allow == "none"
            or (allow == "participants" and role not in (PARTICIPANT, MODERATOR))
            or (allow == "moderators" and role != MODERATOR)
        ):
            raise StanzaError("forbidden", "private messages are not allowed")
        self._rate_limit(occupant)
        message = self._relay_copy(stanza, occupant.nick)
        message.addElement((NS_MUC_USER, "x"))
        self.send_to_occupants(message, [target])

    # ---------------------------------------------------------------------- iq

    def handle_iq(self, stanza: domish.Element, sender: jid.JID, nick: str | None) -> None:
        """Requests to the room (answered by the MUC modules' handlers) or to an occupant.

        Answers of occupants to forwarded requests go back to the requester.
        """
        kind = stanza.getAttribute("type")
        if kind in ("result", "error"):
            if nick is not None:
                self._iq_response(stanza, sender, nick)
            return
        if kind not in ("get", "set"):
            raise StanzaError("bad-request")
        if self.locked and self.affiliation_of(sender.userhost()) != OWNER:
            raise StanzaError("item-not-found")
        if nick is not None:
            self._iq_to_occupant(stanza, sender, nick)
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

    def _iq_to_occupant(self, stanza: domish.Element, sender: jid.JID, nick: str) -> None:
        """Forward a request to an occupant (vCard and the like); answer self-pings."""
        occupant = self.sessions.get(sender.full())
        if occupant is None:
            raise StanzaError("not-acceptable", "you are not in the room")
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "no such occupant")
        query = stanza.firstChildElement()
        if target is occupant and query is not None and query.uri == NS_PING:
            self._result(stanza)  # XEP-0410 self-ping: the client is joined
            return
        forward_id = _new_id()
        self.pending_iqs[forward_id] = (stanza.getAttribute("id"), sender.full(), target.session)
        while len(self.pending_iqs) > MAX_PENDING_IQS:
            del self.pending_iqs[next(iter(self.pending_iqs))]
        forwarded = domish.Element((None, "iq"))
        forwarded["type"] = stanza["type"]
        forwarded["id"] = forward_id
        forwarded["from"] = self.occupant_jid(occupant.nick)
        forwarded["to"] = target.session
        forwarded.children = list(stanza.elements())
        self.send(forwarded)

    def _iq_response(self, stanza: domish.Element, sender: jid.JID, nick: str) -> None:
        """Route an occupant's answer to a forwarded request back to the requester."""
        pending = self.pending_iqs.get(stanza.getAttribute("id", ""))
        if pending is None or pending[2] != sender.full():
            return
        del self.pending_iqs[stanza["id"]]
        original_id, requester, _ = pending
        responder = self.sessions.get(sender.full())
        reply = domish.Element((None, "iq"))
        reply["type"] = stanza["type"]
        if original_id is not None:
            reply["id"] = original_id
        reply["from"] = self.occupant_jid(responder.nick) if responder else self.jid
        reply["to"] = requester
        reply.children = list(stanza.elements())
        self.send(reply)

    # ------------------------------------------------------------------ owner

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
            self._status_message(codes)
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
            presence = domish.Element((None, "presence"))
            presence["from"] = self.occupant_jid(occupant.nick)
            presence["type"] = "unavailable"
            x = presence.addElement((NS_MUC_USER, "x"))
            item = x.addElement("item")
            item["affiliation"] = NONE
            item["role"] = NONE
            element = x.addElement("destroy")
            if alternate:
                element["jid"] = alternate
            if reason:
                element.addElement("reason", content=reason)
            if password:
                element.addElement("password", content=password)
            self.send_to_occupants(presence, [occupant])
        self.occupants.clear()
        self.sessions.clear()
        self.host.room_destroyed(self)

    # ------------------------------------------------------------------ admin

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
            self._announce_affiliation(bare, affiliation)
        self.changed()

    def _announce_affiliation(self, bare: str, affiliation: str) -> None:
        """Tell the occupants about the affiliation change of an absent user."""
        if not self.occupants:
            return
        variants: dict[bool, domish.Element] = {}
        for occupant in list(self.occupants.values()):
            with_jid = self._sees_jids(occupant)
            message = variants.get(with_jid)
            if message is None:
                message = domish.Element((None, "message"))
                message["from"] = self.jid
                message["id"] = _new_id()
                item = message.addElement((NS_MUC_USER, "x")).addElement("item")
                if with_jid:
                    item["jid"] = bare
                item["affiliation"] = affiliation
                item["role"] = NONE
                variants[with_jid] = message
            self.send_to_occupants(message, [occupant])

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

    # ----------------------------------------------------------- registration

    # ------------------------------------------------------------- persistence

    def to_record(self) -> dict:
        """The persistent state (configuration, affiliations, subject)."""
        return {
            "config": self.config.to_dict(),
            "subject": self.subject,
            "subject_from": self.subject_from,
            "affiliations": [(e.jid, e.affiliation, e.reason, e.nick) for e in self.affiliations],
        }
