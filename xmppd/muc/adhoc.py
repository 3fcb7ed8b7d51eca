"""Ad-hoc commands (XEP-0050) of the MUC service for service administrators.

One command, ``destroy-room``: a form listing the rooms; submitting it
destroys the chosen rooms with an optional reason. Non-admins see no
commands and get ``forbidden`` when they try to run one.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form

from xmppd.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.muc.service import MUCService

NS_COMMANDS = "http://jabber.org/protocol/commands"
DESTROY_NODE = "destroy-room"
COMMANDS = {DESTROY_NODE: "Destroy rooms"}
FORM_TYPE = "urn:xmppd:muc:destroy-room"


def command_items(service: MUCService, sender: jid.JID) -> list[tuple[str, str]]:
    """(node, name) of the commands this user may run."""
    if not service.is_admin(sender.userhost()):
        return []
    return list(COMMANDS.items())


def handle_command(
    service: MUCService, stanza: domish.Element, sender: jid.JID, command: domish.Element
) -> domish.Element:
    """Run a command request; returns the ``<command/>`` payload of the result."""
    node = command.getAttribute("node")
    if node not in COMMANDS:
        raise StanzaError("item-not-found", "no such command")
    if not service.is_admin(sender.userhost()):
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
        form = data_form.Form("form", title="Destroy rooms", formNamespace=FORM_TYPE)
        form.addField(
            data_form.Field(
                "list-multi",
                var="rooms",
                label="Rooms to destroy",
                required=True,
                options=[data_form.Option(room.jid) for _, room in sorted(service.rooms.items())],
            )
        )
        form.addField(data_form.Field(var="reason", label="Reason"))
        reply.addChild(form.toElement())
        return reply
    try:
        form = data_form.Form.fromElement(form_element)
    except data_form.Error:
        raise StanzaError("bad-request", "malformed data form") from None
    if form.formType == "cancel":
        reply["status"] = "canceled"
        return reply
    rooms_field = form.fields.get("rooms")
    reason_field = form.fields.get("reason")
    reason = str(reason_field.values[0]) if reason_field and reason_field.values else None
    destroyed = 0
    for value in rooms_field.values if rooms_field else []:
        try:
            room_jid = jid.JID(str(value))
        except (jid.InvalidFormat, UnicodeError, ValueError):
            raise StanzaError("jid-malformed") from None
        room = service.rooms.get(room_jid.user or "")
        if room is None or room_jid.host != service.domain:
            continue
        room.destroy(reason=reason)
        destroyed += 1
    reply["status"] = "completed"
    note = reply.addElement("note", content=f"{destroyed} room(s) destroyed")
    note["type"] = "info"
    return reply
