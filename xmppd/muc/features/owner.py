"""Room configuration by its owners (XEP-0045 10.1, 10.2, 10.9): muc#owner.

* get: the configuration form, built from the field table
  (:data:`xmppd.muc.config.CORE_FIELDS` plus what modules add at
  ``Point.ROOM_CONFIG_FORM``);
* set with a submitted form: read through the same fields, checked by the
  modules at ``Point.ROOM_CONFIG_SUBMITTED``, then, after the result, put
  in force by :meth:`Room.configure` (which announces it with 104 and
  170-174); a cancelled form destroys a room still locked;
* set with ``<destroy/>``: the room is destroyed after the result.

Only owners (and service admins) may do any of it. The disco features of
the room's core settings (persistent, public, anonymity) are listed here.
"""

from __future__ import annotations

from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.module import Point, Scope, iq_handler
from xmppd.muc.affiliations import OWNER
from xmppd.muc.config import (
    CORE_FIELDS,
    ConfigField,
    config_form,
    parse_config_form,
)
from xmppd.muc.feature import MUCModule, MUCRequest
from xmppd.muc.room import Room
from xmppd.muc.stanzas import NS_MUC_OWNER, NS_X_DATA, child, parse_jid


class Owner(MUCModule):
    """muc#owner: the configuration form and room destruction."""

    name = "owner"
    essential = True

    def disco_features(self, scope: Scope, target: Room | None = None) -> list[str]:
        """muc_persistent/temporary, muc_public/hidden, muc_nonanonymous/semianonymous."""
        if scope is not Scope.ROOM or target is None:
            return []
        config = target.config
        return [
            "muc_persistent" if config.persistent else "muc_temporary",
            "muc_public" if config.public else "muc_hidden",
            "muc_nonanonymous" if config.non_anonymous else "muc_semianonymous",
        ]

    def fields(self, room: Room) -> list[ConfigField]:
        """The room's configuration fields: the core's and the modules'."""
        fields = list(CORE_FIELDS)
        self.server.modules.fire(Point.ROOM_CONFIG_FORM, room, fields)
        return fields

    @iq_handler("get", NS_MUC_OWNER, "query", Scope.ROOM)
    def form(self, request: MUCRequest) -> domish.Element:
        """The configuration form with the room's current values."""
        room = _owner_only(request)
        if request.payload.firstChildElement() is not None:
            raise StanzaError("bad-request")
        payload = domish.Element((NS_MUC_OWNER, "query"))
        form = config_form(room.config, f"Configuration for {room.jid}", self.fields(room))
        payload.addChild(form.toElement())
        return payload

    @iq_handler("set", NS_MUC_OWNER, "query", Scope.ROOM)
    def submit(self, request: MUCRequest) -> None:
        """A submitted (or cancelled) configuration form, or a destruction."""
        room = _owner_only(request)
        destroy = child(request.payload, "destroy", NS_MUC_OWNER)
        if destroy is not None:
            alternate = destroy.getAttribute("jid")
            if alternate is not None:
                alternate = parse_jid(alternate).full()
            reason = child(destroy, "reason", NS_MUC_OWNER)
            password = child(destroy, "password", NS_MUC_OWNER)
            request.after_reply(lambda: room.destroy(
                reason=str(reason) if reason is not None else None,
                alternate=alternate,
                password=str(password) if password is not None else None,
            ))
            return None
        element = child(request.payload, "x", NS_X_DATA)
        if element is None:
            raise StanzaError("bad-request", "a data form or destroy is required")
        submission = parse_config_form(element, room.config, self.fields(room))
        if submission is None:  # cancel
            if room.locked:
                request.after_reply(room.destroy)
            return None
        self.server.modules.fire(Point.ROOM_CONFIG_SUBMITTED, room, submission)
        request.after_reply(lambda: room.configure(submission.config))
        return None


def _owner_only(request: MUCRequest) -> Room:
    room = request.room
    if room.affiliation_of(request.sender.userhost()) != OWNER:
        raise StanzaError("forbidden", "only owners may configure the room")
    return room

