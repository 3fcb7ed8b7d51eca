"""Message delivery (RFC 6121 8.5) for the local domain.

The path for a user who is online is synchronous: one dict lookup for the
user's resources and a scan of them (a handful at most). Messages for users
without an available resource go to offline storage through the user's
serial queue; while that queue is busy, live messages queue behind it so
that nothing overtakes stored messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.module import Point

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager

MESSAGE_TYPES = frozenset({"chat", "normal", "groupchat", "headline", "error"})


class MessageHandler:
    """Applies the delivery rules to messages addressed to the local domain."""

    def __init__(self, manager: SessionManager):
        self.manager = manager

    def handle(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID | None) -> None:
        """Deliver, store, bounce or drop a message."""
        kind = stanza.getAttribute("type") or "normal"
        if kind not in MESSAGE_TYPES:
            kind = "normal"  # RFC 6121 5.2.2: unknown types are treated as normal
        manager = self.manager
        if recipient is None:
            # RFC 6120 10.3.1: no 'to' means the sender's own bare JID.
            if sender.host != manager.domain or not sender.user:
                return
            recipient = parse_jid(sender.userhost())
        if not recipient.user:
            self._to_server(stanza, kind)
            return
        username = recipient.user
        if manager.queues.busy(username):
            manager.run(username, stanza, self.deliver, stanza, recipient, kind)
        else:
            self.deliver(stanza, recipient, kind)

    def _to_server(self, stanza: domish.Element, kind: str) -> None:
        if kind in ("chat", "normal"):
            self.manager.reply_error(stanza, "service-unavailable")

    def deliver(self, stanza: domish.Element, recipient: jid.JID, kind: str) -> None:
        """Deliver a message to a local user's sessions or storage (8.5.2, 8.5.3)."""
        manager = self.manager
        sessions = manager._users.get(recipient.user)
        if recipient.resource is not None:
            state = sessions.get(recipient.resource) if sessions else None
            if state is not None:
                if manager.modules.has_hooks(Point.LOCAL_MESSAGE):
                    manager.modules.fire(Point.LOCAL_MESSAGE, recipient.user, [state], stanza)
                manager.deliver(state, stanza)
                return
            if kind == "groupchat":
                manager.reply_error(stanza, "service-unavailable")
                return
            if kind not in ("chat", "normal"):
                return  # headline, error: silently ignored (8.5.3.2.1)
        # Bare JID (or a full JID without a session, treated as bare).
        if kind == "error":
            return
        if kind == "groupchat":
            manager.reply_error(stanza, "service-unavailable")
            return
        available = (
            [s for s in sessions.values() if s.available and s.priority >= 0] if sessions else []
        )
        if kind == "headline" or len(available) < 2:
            targets = available
        else:
            top = max(s.priority for s in available)
            targets = [s for s in available if s.priority == top]
        if sessions and manager.modules.has_hooks(Point.LOCAL_MESSAGE):
            manager.modules.fire(Point.LOCAL_MESSAGE, recipient.user, targets, stanza)
        if targets:
            for state in targets:
                manager.deliver(state, stanza)
            return
        if kind == "headline":
            return
        manager.run(recipient.user, stanza, manager.undelivered, recipient.user, stanza)
