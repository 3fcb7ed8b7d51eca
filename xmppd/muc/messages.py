"""Messages through a room (XEP-0045 7.4, 7.5, 8.1): the room core's relay.

* Groupchat: an occupant with voice speaks to everyone; a message with a
  subject and neither a body nor a thread changes the subject (moderators,
  and participants when the room allows it); with a body or a thread it is
  an ordinary message (XEP-0045 8.1). Either way the room relays
  everything the sender included (threads, hints, other payloads) but
  muc#user elements, under the sender's nick. Each broadcast is handed to
  the modules at ``Point.ROOM_MESSAGE`` (history, logging).
* Private messages go to one occupant, as the room's ``allowpm`` allows.
* Each occupant's messages (both kinds) pass a token bucket: beyond the
  service's rate and burst, ``resource-constraint`` (wait).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.logs import logger
from xmppd.module import Point
from xmppd.muc.affiliations import MODERATOR, PARTICIPANT, VISITOR
from xmppd.muc.occupant import Occupant
from xmppd.muc.outgoing import relay_copy
from xmppd.muc.stanzas import NS_MUC_USER, child

if TYPE_CHECKING:
    from xmppd.muc.room import Room

log = logger(__name__)


def groupchat(room: Room, stanza: domish.Element, occupant: Occupant | None) -> None:
    """Broadcast an occupant's groupchat message (or subject change) to the room."""
    if occupant is None:
        raise StanzaError("not-acceptable", "only occupants may send messages to the room")
    if occupant.role == VISITOR:
        raise StanzaError("forbidden", "you have no voice in this room")
    rate_limit(room, occupant)
    subject = subject_change(stanza)
    message = relay_copy(room, stanza, occupant.nick)
    if subject is not None:
        if not may_change_subject(room, occupant):
            raise StanzaError("forbidden", "you may not change the subject")
        room.subject = str(subject)
        room.subject_from = occupant.nick
        room.subject_by = occupant.bare
        room.send_to_occupants(message, room.occupants.values())
        room.changed()
    else:
        room.send_to_occupants(message, room.occupants.values())
    room.host.modules.fire(Point.ROOM_MESSAGE, room, occupant, message)


def subject_change(stanza: domish.Element) -> domish.Element | None:
    """The ``<subject/>`` of a groupchat message that changes the subject, else None.

    A message with a subject and a body, or a subject and a thread, is an
    ordinary message, not a subject change (XEP-0045 8.1).
    """
    subject = child(stanza, "subject")
    if subject is None or child(stanza, "body") is not None:
        return None
    if child(stanza, "thread") is not None:
        return None
    return subject


def private_message(
    room: Room, stanza: domish.Element, occupant: Occupant | None, nick: str, kind: str
) -> None:
    """Relay a private message to the occupant ``nick``."""
    if occupant is None:
        raise StanzaError("not-acceptable", "only occupants may send private messages")
    if kind == "groupchat":
        raise StanzaError("bad-request", "groupchat messages go to the room")
    target = room.occupants.get(nick)
    if target is None:
        raise StanzaError("item-not-found", "no such occupant")
    allow = room.config.allow_pm
    role = occupant.role
    if (
        allow == "none"
        or (allow == "participants" and role not in (PARTICIPANT, MODERATOR))
        or (allow == "moderators" and role != MODERATOR)
    ):
        raise StanzaError("forbidden", "private messages are not allowed")
    rate_limit(room, occupant)
    message = relay_copy(room, stanza, occupant.nick)
    message.addElement((NS_MUC_USER, "x"))
    room.send_to_occupants(message, [target])


def rate_limit(room: Room, occupant: Occupant) -> None:
    """Refuse a message when the occupant's token bucket is empty."""
    if occupant.bucket is None:
        occupant.bucket = room.host.message_bucket()
    if not occupant.bucket.take():
        log.info(
            "room {room}: message from {user} refused by the rate limit",
            room=room.jid,
            user=occupant.bare,
        )
        raise StanzaError("resource-constraint", "you are sending messages too fast")


def may_change_subject(room: Room, occupant: Occupant) -> bool:
    """Moderators always; participants when the room allows it."""
    if occupant.role == MODERATOR:
        return True
    return room.config.change_subject and occupant.role == PARTICIPANT
