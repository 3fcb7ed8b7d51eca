"""Mediated invitations and declines (XEP-0045 7.8.2, 7.8.3; XEP-0249's legacy x).

* An occupant invites through the room: the invitee gets a message from
  the room with the ``<invite from=.../>`` and its ``<reason/>`` (empty when
  none was given), the room's password (if any), a ``jabber:x:conference``
  element for older clients and a body. The inviter is named by its real
  JID only in non-anonymous rooms (whois anyone, as XEP-0045's examples
  show); otherwise by its occupant JID, in the ``<invite/>`` and the body
  alike, so that no part of the invitation reveals who is behind the nick.
  In a members-only room only owners and admins may invite, and members
  when ``allowinvites`` is on; an invitation there makes the invitee a
  member.
* A decline goes back through the room to whom it names.
* The ``allowinvites`` configuration field.
"""

from __future__ import annotations

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.module import Point, hook
from xmppd.muc.affiliations import ADMIN, MEMBER, NONE, OWNER
from xmppd.muc.config import ConfigField, boolean_field
from xmppd.muc.feature import MUCModule
from xmppd.muc.occupant import Occupant
from xmppd.muc.room import Room
from xmppd.muc.stanzas import NS_CONFERENCE, NS_MUC_USER, child, parse_jid

FIELD = boolean_field("allowinvites", "Occupants may invite others", 130, "allow_invites")


class Invitations(MUCModule):
    """Invitations and declines relayed by the room."""

    name = "invitations"

    @hook(Point.ROOM_CONFIG_FORM)
    def fields(self, room: Room, fields: list[ConfigField]) -> None:
        """The allowinvites field."""
        fields.append(FIELD)

    @hook(Point.ROOM_DIRECT_MESSAGE, priority=10)
    def relay(
        self, room: Room, sender: jid.JID, occupant: Occupant | None, stanza: domish.Element
    ) -> bool:
        """Relay the declines, then the invitations, of a muc#user message."""
        x = child(stanza, "x", NS_MUC_USER)
        if x is None or not (child(x, "invite", NS_MUC_USER) or child(x, "decline", NS_MUC_USER)):
            return False
        for decline in x.elements(NS_MUC_USER, "decline"):
            _decline(room, sender, decline)
        invites = list(x.elements(NS_MUC_USER, "invite"))
        if invites:
            grants_membership = _may_invite(room, occupant)
            inviter = _inviter(room, sender, occupant)
            for invite in invites:
                _invite(room, inviter, stanza, invite, grants_membership)
        return True


def _decline(room: Room, sender: jid.JID, decline: domish.Element) -> None:
    to = parse_jid(decline.getAttribute("to"))
    message = domish.Element((None, "message"))
    message["from"] = room.jid
    message["to"] = to.full()
    out = message.addElement((NS_MUC_USER, "x"))
    forwarded = out.addElement("decline")
    forwarded["from"] = sender.userhost()
    reason = child(decline, "reason", NS_MUC_USER)
    if reason is not None:
        forwarded.addElement("reason", content=str(reason))
    room.send(message)


def _may_invite(room: Room, occupant: Occupant | None) -> bool:
    """Whether invitations make members; StanzaError if the occupant may not invite."""
    if occupant is None:
        raise StanzaError("not-acceptable", "only occupants may invite")
    if not room.config.members_only:
        return False
    affiliation = room.affiliation_of(occupant.bare)
    if affiliation in (OWNER, ADMIN):
        return True
    if room.config.allow_invites and affiliation == MEMBER:
        return True
    raise StanzaError("forbidden", "you may not invite to this room")


def _inviter(room: Room, sender: jid.JID, occupant: Occupant) -> tuple[str, str]:
    """How the invitation names the inviter: (``<invite from>``, the body's name).

    The real JID (full in the element, bare in the body) in non-anonymous
    rooms; the occupant JID in both otherwise.
    """
    if room.config.whois == "anyone":
        return sender.full(), sender.userhost()
    occupant_jid = room.occupant_jid(occupant.nick)
    return occupant_jid, occupant_jid


def _invite(
    room: Room,
    inviter: tuple[str, str],
    stanza: domish.Element,
    invite: domish.Element,
    grants_membership: bool,
) -> None:
    invitee = parse_jid(invite.getAttribute("to"))
    reason = child(invite, "reason", NS_MUC_USER)
    reason_text = str(reason) if reason is not None else None
    if grants_membership and room.affiliations.get(invitee.userhost()) == NONE:
        room.affiliations.set(invitee.userhost(), MEMBER)
        room.changed()
    password = room.config.password
    message = domish.Element((None, "message"))
    message["from"] = room.jid
    message["to"] = invitee.full()
    if stanza.getAttribute("id"):
        message["id"] = stanza["id"]
    out = message.addElement((NS_MUC_USER, "x"))
    forwarded = out.addElement("invite")
    forwarded["from"] = inviter[0]
    forwarded.addElement("reason", content=reason_text or None)
    if password:
        out.addElement("password", content=password)
    legacy = message.addElement((NS_CONFERENCE, "x"))
    legacy["jid"] = room.jid
    if reason_text:
        legacy["reason"] = reason_text
    if password:
        legacy["password"] = password
    text = f"{inviter[1]} invited you to the room {room.jid}"
    if reason_text:
        text += f" ({reason_text})"
    message.addElement("body", content=text)
    room.send(message)
