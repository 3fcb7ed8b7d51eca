"""What the session manager knows about each bound resource."""

from __future__ import annotations

from typing import Any

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish


class SessionState:
    """One bound resource: its session object and its presence state.

    ``presence`` is the last available presence the resource broadcast
    (kept to answer probes), ``directed`` the addresses it sent directed
    available presence to (they get unavailable presence when it goes away),
    ``interested`` whether it requested the roster (roster pushes go only to
    interested resources, RFC 6121 2.1.5).
    """

    __slots__ = (
        "session",
        "jid",
        "full",
        "bare",
        "username",
        "resource",
        "available",
        "priority",
        "presence",
        "directed",
        "interested",
        "bound",
    )

    def __init__(self, session: Any, address: jid.JID):
        self.session = session
        self.jid = address
        self.full: str = address.full()
        self.bare: str = address.userhost()
        self.username: str = address.user
        self.resource: str = address.resource
        self.available = False
        self.priority = 0
        self.presence: domish.Element | None = None
        self.directed: set[str] = set()
        self.interested = False
        self.bound = True

    def __repr__(self) -> str:
        return f"<SessionState {self.full} available={self.available} priority={self.priority}>"
