"""Moderated rooms and voice (XEP-0045 7.13, 8.6, 8.7).

* The ``moderatedroom`` configuration field: in a moderated room users
  without an affiliation enter as visitors (the room core's role rules;
  visitors may not speak there either).
* Voice requests: a visitor of a moderated room sends a ``muc#request``
  form asking for the participant role; every moderator gets the form and
  may approve it by sending it back with ``muc#request_allow`` true, which
  makes the visitor a participant.
* Disco: ``muc_moderated`` or ``muc_unmoderated``.
"""

from __future__ import annotations

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form

from xmppd.errors import StanzaError
from xmppd.module import Point, Scope, hook
from xmppd.muc.affiliations import MODERATOR, PARTICIPANT, VISITOR
from xmppd.muc.config import ConfigField, boolean_field
from xmppd.muc.feature import MUCModule
from xmppd.muc.occupant import Occupant
from xmppd.muc.room import Room
from xmppd.muc.stanzas import NS_MUC_REQUEST, NS_X_DATA, child, new_id

FIELD = boolean_field("moderatedroom", "Only occupants with voice may speak", 70, "moderated")


class Moderation(MUCModule):
    """Moderated rooms and voice requests."""

    name = "moderation"

    def disco_features(self, scope: Scope, target: Room | None = None) -> list[str]:
        """muc_moderated or muc_unmoderated."""
        if scope is not Scope.ROOM or target is None:
            return []
        return ["muc_moderated" if target.config.moderated else "muc_unmoderated"]

    @hook(Point.ROOM_CONFIG_FORM)
    def fields(self, room: Room, fields: list[ConfigField]) -> None:
        """The moderatedroom field."""
        fields.append(FIELD)

    @hook(Point.ROOM_DIRECT_MESSAGE)
    def request_form(
        self, room: Room, sender: jid.JID, occupant: Occupant | None, stanza: domish.Element
    ) -> bool:
        """A voice request (or a moderator's approval of one); other forms are refused."""
        element = child(stanza, "x", NS_X_DATA)
        if element is None:
            return False
        if occupant is None:
            raise StanzaError("not-acceptable", "you are not in the room")
        try:
            form = data_form.Form.fromElement(element)
        except data_form.Error:
            raise StanzaError("bad-request", "malformed data form") from None
        fields = {var: f.values for var, f in form.fields.items()}
        form_type = form.formNamespace or (fields.get("FORM_TYPE") or [None])[0]
        if form_type != NS_MUC_REQUEST:
            raise StanzaError("bad-request", "unknown form")
        if "muc#request_allow" in fields:
            self._approval(room, occupant, fields)
        else:
            self._request(room, occupant, fields)
        return True

    def _request(self, room: Room, occupant: Occupant, fields: dict[str, list]) -> None:
        role = (fields.get("muc#role") or [""])[0]
        if role != PARTICIPANT or not room.config.moderated or occupant.role != VISITOR:
            raise StanzaError("not-acceptable", "no voice to request")
        pending = self._pending(room)
        pending.add(occupant.nick)
        moderators = [o for o in room.occupants.values() if o.role == MODERATOR]
        request = data_form.Form("form", title="Voice request", formNamespace=NS_MUC_REQUEST)
        request.addField(data_form.Field("list-single", var="muc#role", value=PARTICIPANT))
        request.addField(data_form.Field("jid-single", var="muc#jid", value=occupant.session))
        request.addField(data_form.Field(var="muc#roomnick", value=occupant.nick))
        request.addField(data_form.Field("boolean", var="muc#request_allow", value=False))
        message = domish.Element((None, "message"))
        message["from"] = room.jid
        message["id"] = new_id()
        message.addChild(request.toElement())
        room.send_to_occupants(message, moderators)

    def _approval(self, room: Room, occupant: Occupant, fields: dict[str, list]) -> None:
        if occupant.role != MODERATOR:
            raise StanzaError("forbidden")
        allow = str((fields.get("muc#request_allow") or ["false"])[0]).lower() in ("1", "true")
        nick = (fields.get("muc#roomnick") or [""])[0]
        self._pending(room).discard(nick)
        target = room.occupants.get(nick)
        if not allow or target is None or target.role != VISITOR:
            return
        target.role = PARTICIPANT
        room.broadcast_presence(target, actor=occupant.nick)

    def _pending(self, room: Room) -> set[str]:
        """Nicks of the visitors whose voice request waits (those still visitors)."""
        pending = room.data.setdefault(self.name, set())
        for nick in list(pending):
            occupant = room.occupants.get(nick)
            if occupant is None or occupant.role != VISITOR:
                pending.discard(nick)
        return pending
