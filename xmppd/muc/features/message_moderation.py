"""Moderated message retraction (XEP-0425, ``urn:xmpp:message-moderate:1``).

A moderator asks the room to retract a message by the room's stanza-id::

    <iq type='set' to='room'><moderate id='STANZA-ID' xmlns='urn:xmpp:message-moderate:1'>
      <retract xmlns='urn:xmpp:message-retract:1'/><reason>…</reason></moderate></iq>

* A ``<moderate/>`` without an id or without ``<retract/>``: ``bad-request``;
  from anyone but a moderator of the room: ``forbidden``; an id the room's
  history and archive do not know, or one retracted already:
  ``item-not-found``.
* The room broadcasts the retraction (XEP-0424 form) with the moderator's
  occupant JID (and occupant id, when the room stamps them) and the reason,
  plus XEP-0425's backwards-compatible form for clients of version 0.2
  (``<apply-to xmlns='urn:xmpp:fasten:0'>`` with
  ``urn:xmpp:message-moderate:0``); then the moderator gets the iq result.
  The retraction carries a stanza-id of its own and is archived like any
  groupchat message (``with`` the room's JID).
* The archive keeps a tombstone instead of the message: its archive id,
  time stamp and occupant stay, its content becomes
  ``<retracted stamp xmlns='urn:xmpp:message-retract:1'>`` with
  ``<moderated/>`` and the reason (and the version 0.2 form), keeping its
  stanza-id and occupant id. The in-memory join history drops it.

Rooms stamp stanza-ids on every room (:mod:`xmppd.muc.features.archive`),
so moderation works on each: on messages still in the room's history, and,
with archiving on, on everything in its archive.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.datetimes import format_stamp
from xmppd.errors import StanzaError
from xmppd.mam.store import new_archive_id
from xmppd.module import Scope, iq_handler
from xmppd.muc.affiliations import MODERATOR
from xmppd.muc.feature import MUCModule, MUCRequest
from xmppd.muc.features.archive import add_stanza_id
from xmppd.muc.features.history import NS_SID
from xmppd.muc.room import Room
from xmppd.muc.stanzas import new_id
from xmppd.sm.stanzas import NS_CLIENT, child_elements, deserialise

NS_MODERATE = "urn:xmpp:message-moderate:1"
NS_MODERATE_0 = "urn:xmpp:message-moderate:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_RETRACT_0 = "urn:xmpp:message-retract:0"
NS_FASTEN = "urn:xmpp:fasten:0"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
#: The longest reason kept (characters); a longer one is cut.
MAX_REASON = 1024


class MessageModeration(MUCModule):
    """Moderators retract occupants' messages (XEP-0425)."""

    name = "message-moderation"

    def disco_features(self, scope: Scope, target: Room | None = None) -> list[str]:
        """The moderation features on rooms, while the archive module stamps stanza-ids."""
        if scope is not Scope.ROOM or self.server.modules.get("archive") is None:
            return []
        return [NS_MODERATE, NS_MODERATE_0]

    @iq_handler("set", NS_MODERATE, "moderate", Scope.ROOM)
    def moderate(self, request: MUCRequest) -> defer.Deferred:
        """Retract a message by its stanza-id, announce it, leave a tombstone."""
        room = request.room
        payload = request.payload
        stanza_id = (payload.getAttribute("id") or "").strip()
        retract = [c for c in child_elements(payload)
                   if c.name == "retract" and c.uri == NS_RETRACT]
        if not stanza_id or len(retract) != 1:
            raise StanzaError("bad-request", "moderate needs an id and one <retract/>")
        reasons = [c for c in child_elements(payload) if c.name == "reason"]
        reason = str(reasons[0]).strip()[:MAX_REASON] if reasons else ""
        occupant = room.sessions.get(request.sender.full())
        if occupant is None or occupant.role != MODERATOR:
            raise StanzaError("forbidden", "only moderators may retract messages")
        moderator = room.occupant_jid(occupant.nick)
        history_module = self.server.modules.get("history")
        history = history_module.history(room) if history_module is not None else None
        entry = history.find(stanza_id) if history is not None else None
        archive = self.server.modules.get("archive")
        if archive is not None:
            d = archive.lookup(room, stanza_id)
        else:
            d = defer.succeed(None)

        def found(archived):
            if archived is None and entry is None:
                raise StanzaError("item-not-found", "no message with that id in this room")
            original = deserialise(archived.stanza) if archived is not None else None
            if original is not None and is_tombstone(original):
                raise StanzaError("item-not-found", "that message was retracted already")
            occupant_id = self._occupant_id(room, occupant.bare)
            now = self.server.reactor.seconds()
            announcement = retraction(room, stanza_id, moderator, occupant_id, reason)
            add_stanza_id(announcement, room.jid,
                          archive.new_id() if archive is not None else new_archive_id(now))
            room.send_to_occupants(announcement, room.occupants.values())
            if archive is not None:
                archive.archive_message(room, announcement, room.jid)
                if original is not None:
                        archive.replace(room, stanza_id, tombstone(
                            original, now, moderator, occupant_id, reason))
            if history is not None:
                history.remove(stanza_id)
            return None

        return d.addCallback(found)

    def _occupant_id(self, room: Room, bare: str) -> str | None:
        module = self.server.modules.get("occupant-id")
        return module.occupant_id(room, bare) if module is not None else None


def _moderated(parent: domish.Element, moderator: str, occupant_id: str | None) -> None:
    moderated = parent.addElement((NS_MODERATE, "moderated"))
    moderated["by"] = moderator
    if occupant_id is not None:
        moderated.addElement((NS_OCCUPANT_ID, "occupant-id"))["id"] = occupant_id


def retraction(room: Room, stanza_id: str, moderator: str, occupant_id: str | None,
               reason: str) -> domish.Element:
    """The message announcing a moderated retraction (XEP-0425 §4 and its 0.2 form)."""
    message = domish.Element((None, "message"))
    message["type"] = "groupchat"
    message["from"] = room.jid
    message["id"] = new_id()
    retract = message.addElement((NS_RETRACT, "retract"))
    retract["id"] = stanza_id
    _moderated(retract, moderator, occupant_id)
    if reason:
        retract.addElement((NS_RETRACT, "reason"), content=reason)
    apply_to = message.addElement((NS_FASTEN, "apply-to"))
    apply_to["id"] = stanza_id
    legacy = apply_to.addElement((NS_MODERATE_0, "moderated"))
    legacy["by"] = moderator
    legacy.addElement((NS_RETRACT_0, "retract"))
    if reason:
        legacy.addElement((NS_MODERATE_0, "reason"), content=reason)
    return message


def is_tombstone(message: domish.Element) -> bool:
    """True if an archived message is what :func:`tombstone` left of one."""
    return any(c.name == "retracted" and c.uri == NS_RETRACT for c in child_elements(message))


def tombstone(original: domish.Element, stamp: float, moderator: str,
              occupant_id: str | None, reason: str) -> domish.Element:
    """What the archive keeps of a retracted message (XEP-0425 §5 and its 0.2 form).

    The original's attributes, stanza-id and occupant id stay; its content
    goes.
    """
    message = domish.Element((NS_CLIENT, "message"), NS_CLIENT, dict(original.attributes))
    for element in child_elements(original):
        if (element.name, element.uri) in (("stanza-id", NS_SID),
                                           ("occupant-id", NS_OCCUPANT_ID)):
            message.addChild(element)
    retracted = message.addElement((NS_RETRACT, "retracted"))
    retracted["stamp"] = format_stamp(stamp)
    _moderated(retracted, moderator, occupant_id)
    if reason:
        retracted.addElement((NS_RETRACT, "reason"), content=reason)
    legacy = message.addElement((NS_MODERATE_0, "moderated"))
    legacy["by"] = moderator
    legacy.addElement((NS_RETRACT_0, "retracted"))["stamp"] = format_stamp(stamp)
    if reason:
        legacy.addElement((NS_MODERATE_0, "reason"), content=reason)
    return message
