"""Nick changes (XEP-0045 7.6), with several sessions per nick.

The usual case (the occupant's only session, a free nick) is the 303 nick
change every occupant sees. A session of an occupant with several, or a
session moving to a nick its user already holds, moves alone (as Prosody
does): it sees itself change nick (303 + 110), the others see the old
occupant stay (or leave) and the session appear under the new nick.
Reserved nicks (muc#register) are refused to others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.muc.affiliations import NONE
from xmppd.muc.occupant import Occupant
from xmppd.muc.outgoing import occupant_presence
from xmppd.muc.stanzas import stored_presence as _stored_presence

if TYPE_CHECKING:
    from xmppd.muc.room import Room


def change_nick(
    room: Room, occupant: Occupant, full: str, stanza: domish.Element, new_nick: str
) -> None:
    """A session of ``occupant`` asks for the nick ``new_nick`` (see the module docstring)."""
    target = room.occupants.get(new_nick)
    if target is not None and target.bare != occupant.bare:
        raise StanzaError("conflict", "that nickname is in use")
    registered = room.affiliations.nick_owner(new_nick)
    if registered is not None and registered != occupant.bare:
        raise StanzaError("conflict", "that nickname is reserved")
    if target is None and len(occupant.sessions) == 1:
        room.broadcast_presence(
            occupant,
            unavailable=True,
            base=_stored_presence(None),
            codes=("303",),
            new_nick=new_nick,
        )
        del room.occupants[occupant.nick]
        occupant.nick = new_nick
        room.occupants[new_nick] = occupant
        occupant.set_presence(full, _stored_presence(stanza))
        room.broadcast_presence(occupant)
        return
    _split_session(room, occupant, full, stanza, new_nick, target)

def _split_session(
    room: Room,
    occupant: Occupant,
    full: str,
    stanza: domish.Element,
    new_nick: str,
    target: Occupant | None,
) -> None:
    """Move one session of ``occupant`` to ``new_nick`` (a new or a same-user occupant)."""
    # 1. the moving session sees its old nick go, as a nick change
    element = occupant_presence(
        room,
        occupant,
        with_jid=True,
        is_self=True,
        unavailable=True,
        base=_stored_presence(None),
        session=full,
        codes=("303",),
        new_nick=new_nick,
    )
    room.send_to(element, full)
    occupant.remove_session(full)
    del room.sessions[full]
    # 2. the others (and the remaining sessions) see the old occupant stay, or leave
    if occupant.sessions:
        room.broadcast_presence(occupant)
    else:
        room.broadcast_presence(
            occupant,
            self_sessions=(),
            unavailable=True,
            base=_stored_presence(None),
            role=NONE,
        )
        del room.occupants[occupant.nick]
    # 3. the session appears under the new nick
    if target is None:
        target = Occupant(new_nick, occupant.bare, occupant.role)
        target.bucket = occupant.bucket
        room.occupants[new_nick] = target
    target.set_presence(full, _stored_presence(stanza))
    room.sessions[full] = target
    room.broadcast_presence(target)
    # 4. the moving session still sees its other sessions' occupant
    if occupant.sessions:
        room.send_to(occupant_presence(room, occupant, with_jid=True, is_self=False), full)
