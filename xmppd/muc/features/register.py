"""Nickname registration with a room (XEP-0045 7.10, 7.12): jabber:iq:register.

* get: the registration form (``muc#register_roomnick``), and whether and
  as whom the user is registered;
* set: a submitted form reserves the nick (a user with no affiliation
  becomes a member; in a members-only room only affiliated users may
  register); ``<remove/>`` releases it (a member becomes unaffiliated).

Reserved nicks live in the room's affiliation list (the room core refuses
them to others at join and nick change); disco's ``x-roomuser-item`` node
shows a user's registered nick.
"""

from __future__ import annotations

from twisted.words.xish import domish
from wokkel import data_form

from xmppd.errors import StanzaError
from xmppd.module import Scope, iq_handler
from xmppd.muc.affiliations import MEMBER, NONE, OUTCAST
from xmppd.muc.feature import MUCModule, MUCRequest
from xmppd.muc.stanzas import NS_MUC_REGISTER, NS_REGISTER, NS_X_DATA, child, resourceprep_nick


class Register(MUCModule):
    """jabber:iq:register on a room: reserving a nick."""

    name = "register"
    features = {Scope.ROOM: [NS_REGISTER]}

    @iq_handler("get", NS_REGISTER, "query", Scope.ROOM)
    def form(self, request: MUCRequest) -> domish.Element:
        """The registration form (with the registered nick, if any)."""
        room = request.room
        entry = room.affiliations.entry(request.sender.userhost())
        payload = domish.Element((NS_REGISTER, "query"))
        if entry is not None and entry.nick and entry.affiliation != OUTCAST:
            payload.addElement("registered")
            payload.addElement("username", content=entry.nick)
        form = data_form.Form(
            "form", title=f"Nickname registration for {room.jid}", formNamespace=NS_MUC_REGISTER
        )
        form.addField(
            data_form.Field(
                var="muc#register_roomnick",
                label="Nickname",
                required=True,
                value=entry.nick if entry is not None and entry.nick else None,
            )
        )
        payload.addChild(form.toElement())
        return payload

    @iq_handler("set", NS_REGISTER, "query", Scope.ROOM)
    def register(self, request: MUCRequest) -> None:
        """Reserve a nick (or, with ``<remove/>``, release it)."""
        room = request.room
        bare = request.sender.userhost()
        stored = room.affiliations.get(bare)
        if stored == OUTCAST:
            raise StanzaError("forbidden")
        if child(request.payload, "remove", NS_REGISTER) is not None:
            request.after_reply(lambda: _unregister(room, bare))
            return None
        form_element = child(request.payload, "x", NS_X_DATA)
        if form_element is None:
            raise StanzaError("bad-request", "a registration form is required")
        try:
            form = data_form.Form.fromElement(form_element)
        except data_form.Error:
            raise StanzaError("bad-request") from None
        if form.formType == "cancel":
            return None
        field = form.fields.get("muc#register_roomnick")
        if field is None or not field.values or not str(field.values[0]).strip():
            raise StanzaError("not-acceptable", "a nickname is required")
        nick = resourceprep_nick(str(field.values[0]))
        owner = room.affiliations.nick_owner(nick)
        in_use = room.occupants.get(nick)
        if (owner is not None and owner != bare) or (in_use is not None and in_use.bare != bare):
            raise StanzaError("conflict", "that nickname is taken")
        if room.config.members_only and room.affiliation_of(bare) == NONE:
            raise StanzaError("registration-required")

        def reserve() -> None:
            if stored == NONE:
                room.set_affiliation(bare, MEMBER)
            room.affiliations.set_nick(bare, nick)
            room.changed()

        request.after_reply(reserve)
        return None


def _unregister(room, bare: str) -> None:
    entry = room.affiliations.entry(bare)
    if entry is None:
        return
    room.affiliations.set_nick(bare, None)
    if entry.affiliation == MEMBER:
        room.set_affiliation(bare, NONE)
    else:
        room.changed()
