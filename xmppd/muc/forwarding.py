"""Requests between occupants (XEP-0045 7.7): vCard queries and the like, and self-pings.

An iq get/set from an occupant to another occupant's room JID is passed
on to that occupant's shown session from the sender's room JID, under a
new id; the answer goes back to the requester under the original id. A
room remembers at most :data:`MAX_PENDING_IQS` unanswered requests. A
ping to one's own room JID is answered by the room (XEP-0410).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.muc.stanzas import NS_PING, new_id
from xmppd.sm.stanzas import result_for

if TYPE_CHECKING:
    from xmppd.muc.room import Room

MAX_PENDING_IQS = 1000


class IqForwarding:
    """The requests a room passed on to occupants and not yet answered."""

    def __init__(self) -> None:
        #: forwarded id -> (original id, requester's full JID, addressed session)
        self.pending: dict[str, tuple[str | None, str, str]] = {}

    def forward(self, room: Room, stanza: domish.Element, sender: jid.JID, nick: str) -> None:
        """Pass a request on to the occupant ``nick`` (or answer a self-ping)."""
        occupant = room.sessions.get(sender.full())
        if occupant is None:
            raise StanzaError("not-acceptable", "you are not in the room")
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "no such occupant")
        query = stanza.firstChildElement()
        if target is occupant and query is not None and query.uri == NS_PING:
            room.send(result_for(stanza))  # XEP-0410 self-ping: the client is joined
            return
        forward_id = new_id()
        self.pending[forward_id] = (stanza.getAttribute("id"), sender.full(), target.session)
        while len(self.pending) > MAX_PENDING_IQS:
            del self.pending[next(iter(self.pending))]
        forwarded = domish.Element((None, "iq"))
        forwarded["type"] = stanza["type"]
        forwarded["id"] = forward_id
        forwarded["from"] = room.occupant_jid(occupant.nick)
        forwarded["to"] = target.session
        forwarded.children = list(stanza.elements())
        room.send(forwarded)

    def answered(self, room: Room, stanza: domish.Element, sender: jid.JID) -> None:
        """Route an occupant's answer to a forwarded request back to the requester."""
        pending = self.pending.get(stanza.getAttribute("id", ""))
        if pending is None or pending[2] != sender.full():
            return
        del self.pending[stanza["id"]]
        original_id, requester, _ = pending
        responder = room.sessions.get(sender.full())
        reply = domish.Element((None, "iq"))
        reply["type"] = stanza["type"]
        if original_id is not None:
            reply["id"] = original_id
        reply["from"] = room.occupant_jid(responder.nick) if responder else room.jid
        reply["to"] = requester
        reply.children = list(stanza.elements())
        room.send(reply)
