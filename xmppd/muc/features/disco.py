"""Service discovery (XEP-0030, XEP-0045 6) of the MUC service and its rooms.

* The service: the ``conference`` identity, the features of every MUC
  module, and as items the public, unlocked rooms; items of a node come
  from the module that serves it (the ad-hoc commands), other nodes are
  ``service-unavailable``.
* A room: the ``conference`` identity named after the room, the features
  of every module for this room (they follow its configuration), and the
  ``muc#roominfo`` form; the ``x-roomuser-item`` node tells a user its
  registered nick. Its items are the occupants, for public rooms and for
  occupants.
"""

from __future__ import annotations

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel import data_form, disco

from xmppd.errors import StanzaError
from xmppd.module import Scope, iq_handler
from xmppd.muc.feature import MUCModule, MUCRequest
from xmppd.muc.room import Room
from xmppd.muc.stanzas import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC_ROOMINFO

#: The node where a user finds its registered nick (XEP-0045 7.12).
ROOMUSER_NODE = "x-roomuser-item"


class Disco(MUCModule):
    """disco#info and disco#items for the MUC service and its rooms."""

    name = "disco"
    features = {
        Scope.MUC_SERVICE: [NS_DISCO_INFO, NS_DISCO_ITEMS],
        Scope.ROOM: [NS_DISCO_INFO, NS_DISCO_ITEMS],
    }
    identities = {Scope.MUC_SERVICE: [("conference", "text", "Chatrooms")]}

    def disco_forms(self, scope: Scope, target: Room | None = None) -> list[data_form.Form]:
        """A room's ``muc#roominfo`` form (XEP-0045 6.4)."""
        if scope is not Scope.ROOM or target is None:
            return []
        config = target.config
        form = data_form.Form("result", formNamespace=NS_MUC_ROOMINFO)
        form.addField(data_form.Field(var="muc#roominfo_description", value=config.description))
        form.addField(
            data_form.Field(var="muc#roominfo_occupants", value=str(len(target.occupants)))
        )
        form.addField(data_form.Field(var="muc#roominfo_subject", value=target.subject))
        if config.language:
            form.addField(data_form.Field(var="muc#roominfo_lang", value=config.language))
        form.addField(data_form.Field(var="muc#roomconfig_roomname", value=config.name))
        form.addField(
            data_form.Field(
                "boolean", var="muc#roomconfig_changesubject", value=config.change_subject
            )
        )
        return [form]

    # -- the service ---------------------------------------------------------

    @iq_handler("get", NS_DISCO_INFO, "query", Scope.MUC_SERVICE)
    def service_info(self, request: MUCRequest) -> domish.Element:
        """The service's identity and the features of every MUC module."""
        if request.payload.getAttribute("node"):
            raise StanzaError("service-unavailable")
        return self.server.modules.disco_info(Scope.MUC_SERVICE).toElement()

    @iq_handler("get", NS_DISCO_ITEMS, "query", Scope.MUC_SERVICE)
    def service_items(self, request: MUCRequest) -> domish.Element:
        """The public, unlocked rooms; or the items of a module's node."""
        node = request.payload.getAttribute("node")
        items = disco.DiscoItems()
        if node:
            for module in self.server.modules.modules.values():
                found = module.node_items(Scope.MUC_SERVICE, node, request)
                if found is not None:
                    items.nodeIdentifier = node
                    for item in found:
                        items.append(item)
                    return items.toElement()
            raise StanzaError("service-unavailable")
        rooms = self.server.rooms
        for name in sorted(rooms):
            room = rooms[name]
            if room.locked or not room.config.public:
                continue
            items.append(disco.DiscoItem(jid.JID(room.jid), name=room.config.name or name))
        return items.toElement()

    # -- a room ----------------------------------------------------------------

    @iq_handler("get", NS_DISCO_INFO, "query", Scope.ROOM)
    def room_info(self, request: MUCRequest) -> domish.Element:
        """The room's identity, features and roominfo form; or the user's registered nick."""
        room = request.room
        node = request.payload.getAttribute("node")
        info = disco.DiscoInfo()
        if node == ROOMUSER_NODE:
            info.nodeIdentifier = node
            entry = room.affiliations.entry(request.sender.userhost())
            if entry is not None and entry.nick:
                info.append(disco.DiscoIdentity("conference", "text", entry.nick))
            return info.toElement()
        if node:
            raise StanzaError("item-not-found")
        info.append(disco.DiscoIdentity("conference", "text", room.config.name or room.name))
        for item in self.server.modules.disco_info(Scope.ROOM, room):
            info.append(item)
        return info.toElement()

    @iq_handler("get", NS_DISCO_ITEMS, "query", Scope.ROOM)
    def room_items(self, request: MUCRequest) -> domish.Element:
        """The occupants, for a public room or to an occupant."""
        room = request.room
        if request.payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        items = disco.DiscoItems()
        if room.config.public or request.sender.full() in room.sessions:
            for nick in sorted(room.occupants):
                items.append(disco.DiscoItem(jid.JID(room.occupant_jid(nick))))
        return items.toElement()
