"""Ad-hoc commands (XEP-0050) of the MUC service for service administrators.

One command, ``destroy-room``: a form listing the rooms; submitting it
destroys the chosen rooms with an optional reason. Non-admins see no
commands and get ``forbidden`` when they try to run one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form, disco

from xmppd.addresses import JID_ERRORS
from xmppd.errors import StanzaError
from xmppd.module import Scope, iq_handler
from xmppd.muc.feature import MUCModule, MUCRequest

NS_COMMANDS = "http://jabber.org/protocol/commands"
DESTROY_NODE = "destroy-room"
COMMANDS = {DESTROY_NODE: "Destroy rooms"}
FORM_TYPE = "urn:xmppd:muc:destroy-room"


class AdHoc(MUCModule):
    """The service administrators' commands."""

    name = "adhoc"
    features = {Scope.MUC_SERVICE: [NS_COMMANDS]}

    def node_items(
        self, scope: Scope, node: str, request: MUCRequest
    ) -> Iterable[disco.DiscoItem] | None:
        """The commands this user may run (none unless a service admin)."""
        if scope is not Scope.MUC_SERVICE or node != NS_COMMANDS:
            return None
        if not self.server.is_admin(request.sender.userhost()):
            return []
        return [
            disco.DiscoItem(jid.JID(self.server.domain), command, name)
            for command, name in COMMANDS.items()
        ]

    @iq_handler("set", NS_COMMANDS, "command", Scope.MUC_SERVICE)
    def command(self, request: MUCRequest) -> domish.Element:
        """Run a command request; returns the ``<command/>`` payload of the result."""
        command = request.payload
        node = command.getAttribute("node")
        if node not in COMMANDS:
            raise StanzaError("item-not-found", "no such command")
        if not self.server.is_admin(request.sender.userhost()):
            raise StanzaError("forbidden", "only service administrators may run commands")
        action = command.getAttribute("action", "execute")
        session = command.getAttribute("sessionid") or uuid.uuid4().hex
        reply = domish.Element((NS_COMMANDS, "command"))
        reply["node"] = node
        reply["sessionid"] = session
        if action == "cancel":
            reply["status"] = "canceled"
            return reply
        form_element = None
        for element in command.elements("jabber:x:data", "x"):
            form_element = element
        if form_element is None:
            if action not in ("execute", "next"):
                raise StanzaError("bad-request", "unexpected action")
            reply["status"] = "executing"
            actions = reply.addElement("actions")
            actions["execute"] = "complete"
            actions.addElement("complete")
            reply.addChild(self._destroy_form().toElement())
            return reply
        try:
            form = data_form.Form.fromElement(form_element)
        except data_form.Error:
            raise StanzaError("bad-request", "malformed data form") from None
        if form.formType == "cancel":
            reply["status"] = "canceled"
            return reply
        destroyed = self._destroy(form)
        reply["status"] = "completed"
        note = reply.addElement("note", content=f"{destroyed} room(s) destroyed")
        note["type"] = "info"
        return reply

    def _destroy_form(self) -> data_form.Form:
        rooms = self.server.rooms
        form = data_form.Form("form", title="Destroy rooms", formNamespace=FORM_TYPE)
        form.addField(
            data_form.Field(
                "list-multi",
                var="rooms",
                label="Rooms to destroy",
                required=True,
                options=[data_form.Option(rooms[name].jid) for name in sorted(rooms)],
            )
        )
        form.addField(data_form.Field(var="reason", label="Reason"))
        return form

    def _destroy(self, form: data_form.Form) -> int:
        rooms_field = form.fields.get("rooms")
        reason_field = form.fields.get("reason")
        reason = str(reason_field.values[0]) if reason_field and reason_field.values else None
        destroyed = 0
        for value in rooms_field.values if rooms_field else []:
            try:
                room_jid = jid.JID(str(value))
            except JID_ERRORS:
                raise StanzaError("jid-malformed") from None
            room = self.server.rooms.get(room_jid.user or "")
            if room is None or room_jid.host != self.server.domain:
                continue
            room.destroy(reason=reason)
            destroyed += 1
        return destroyed
