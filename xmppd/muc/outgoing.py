"""The stanzas a room builds: what it tells its occupants and relays.

An occupant's presence as the room shows it (the muc#user ``<item/>`` and
the status codes), the room's status and subject messages, the notices of
a destruction and of an absent user's affiliation change, and the copy of
a message relayed under the sender's nick. Each is built once; the room
sends shallow copies that differ only in 'to'.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from twisted.words.xish import domish

from xmppd.module import Point
from xmppd.muc.affiliations import NONE
from xmppd.muc.occupant import Occupant
from xmppd.muc.stanzas import NS_MUC_USER, new_id
from xmppd.stanza import share_children_xml

if TYPE_CHECKING:
    from xmppd.muc.room import Room


def occupant_presence(
    room: Room,
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
    """An occupant's presence from the room, with its muc#user items and status codes.

    ``base`` is the presence whose children are shown (default: the
    occupant's own). ``with_jid`` shows real JIDs: one ``<item/>`` per
    session of the occupant (as Prosody does), or only ``session``'s when
    it is given (a presence about that one session); without, one item
    without 'jid'. The status codes that describe the event come first
    (``pre_codes``, ``codes``, then for the occupant itself
    ``self_codes``), then the item(s), then 110 for the occupant itself.
    The result is handed to the modules at ``Point.ROOM_PRESENCE``.
    """
    presence = domish.Element((None, "presence"))
    presence["from"] = room.occupant_jid(occupant.nick)
    if unavailable:
        presence["type"] = "unavailable"
    source = base if base is not None else occupant.presence
    if source is not None:
        presence.children.extend(source.children)
    x = presence.addElement((NS_MUC_USER, "x"))
    for code in (*pre_codes, *codes, *(self_codes if is_self else ())):
        x.addElement("status")["code"] = code
    if not with_jid:
        jids: list[str | None] = [None]
    elif session is not None:
        jids = [session]
    else:
        jids = list(occupant.sessions) or [occupant.session]
    for real_jid in jids:
        item = x.addElement("item")
        if real_jid is not None:
            item["jid"] = real_jid
        item["affiliation"] = affiliation or room.affiliation_of(occupant.bare)
        item["role"] = role or occupant.role
        if new_nick is not None:
            item["nick"] = new_nick
        if actor is not None:
            item.addElement("actor")["nick"] = actor
        if reason:
            item.addElement("reason", content=reason)
    if is_self:
        x.addElement("status")["code"] = "110"
    room.host.modules.fire(Point.ROOM_PRESENCE, room, occupant, presence)
    return presence


def shown_presence(room: Room, occupant: Occupant, with_jid: bool) -> domish.Element:
    """An occupant's presence as a joiner sees it (no status codes), built once per state.

    Every join sends the joiner every occupant's presence, so a room of N
    occupants would build N presences per join; this one is kept on the
    occupant (children written once, see ``share_children_xml``) and built
    again only when something it shows changed: nick, role, affiliation,
    shown presence or, with real JIDs, the sessions.
    """
    key = (occupant.nick, occupant.role, room.affiliation_of(occupant.bare),
           occupant.presence, tuple(occupant.sessions) if with_jid else None)
    kept = occupant.shown.get(with_jid)
    if kept is not None and kept[0] == key:
        return kept[1]
    element = occupant_presence(room, occupant, with_jid=with_jid, is_self=False)
    share_children_xml(element)
    occupant.shown[with_jid] = (key, element)
    return element


def status_message(room: Room, codes: Iterable[str]) -> domish.Element:
    """A groupchat message from the room carrying status codes (104, 170-174)."""
    message = domish.Element((None, "message"))
    message["type"] = "groupchat"
    message["from"] = room.jid
    message["id"] = new_id()
    x = message.addElement((NS_MUC_USER, "x"))
    for code in codes:
        x.addElement("status")["code"] = code
    return message


def subject_message(room: Room) -> domish.Element:
    """The room's subject (empty if none), from whoever set it."""
    message = domish.Element((None, "message"))
    message["type"] = "groupchat"
    if room.subject and room.subject_from:
        message["from"] = room.occupant_jid(room.subject_from)
    else:
        message["from"] = room.jid
    message["id"] = new_id()
    message.addElement("subject", content=room.subject or None)
    return message


def destroy_presence(
    room: Room,
    occupant: Occupant,
    reason: str | None,
    alternate: str | None,
    password: str | None,
) -> domish.Element:
    """The unavailable presence with ``<destroy/>`` an occupant gets when the room goes.

    The modules see it at ``Point.ROOM_PRESENCE`` like any occupant's presence.
    """
    presence = domish.Element((None, "presence"))
    presence["from"] = room.occupant_jid(occupant.nick)
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
    room.host.modules.fire(Point.ROOM_PRESENCE, room, occupant, presence)
    return presence


def affiliation_notice(
    room: Room, bare: str, affiliation: str, *, codes: Iterable[str] = (), reason: str | None = None
) -> domish.Element:
    """The message telling occupants of the new affiliation of a user not in the room.

    Its item names the user by bare JID with the affiliation, and no role
    (a user who is not in the room has none); the status codes (301 for a
    ban) come before it, a reason goes inside it (XEP-0045 example 195, as
    Prosody sends it).
    """
    message = domish.Element((None, "message"))
    message["from"] = room.jid
    message["id"] = new_id()
    x = message.addElement((NS_MUC_USER, "x"))
    for code in codes:
        x.addElement("status")["code"] = code
    item = x.addElement("item")
    item["jid"] = bare
    item["affiliation"] = affiliation
    if reason:
        item.addElement("reason", content=reason)
    return message


def relay_copy(room: Room, stanza: domish.Element, nick: str) -> domish.Element:
    """A message as the room relays it: from the nick, without addresses or muc#user.

    The modules see it at ``Point.ROOM_RELAY`` before it goes out.
    """
    message = domish.Element((None, "message"))
    for key, value in stanza.attributes.items():
        if key not in ("to", "from"):
            message[key] = value
    message["from"] = room.occupant_jid(nick)
    for element in stanza.elements():
        if element.uri != NS_MUC_USER:
            message.children.append(element)
    occupant = room.occupants.get(nick)
    if occupant is not None:
        room.host.modules.fire(Point.ROOM_RELAY, room, occupant, message)
    return message
