"""An occupant of a room: one nick, one bare JID, one or more client sessions."""

from __future__ import annotations

from twisted.words.xish import domish

from xmppd.ratelimit import TokenBucket


class Occupant:
    """A room occupant.

    ``sessions`` maps each full JID the user joined with to the last
    presence it sent (stripped of MUC payloads); several resources of one
    user may share a nick. ``session`` is the full JID whose presence is
    shown to the room (the most recent one).
    """

    def __init__(self, nick: str, bare: str, role: str) -> None:
        self.nick = nick
        self.bare = bare
        self.role = role
        self.sessions: dict[str, domish.Element] = {}
        self.session: str = ""
        self.bucket: TokenBucket | None = None
        #: What others see when they join, per real-JID visibility (outgoing.shown_presence).
        self.shown: dict[bool, tuple[tuple, domish.Element]] = {}

    def set_presence(self, full: str, presence: domish.Element) -> None:
        """Record the presence of one session and make it the shown one."""
        self.sessions[full] = presence
        self.session = full

    def remove_session(self, full: str) -> bool:
        """Forget a session; True if the occupant has none left."""
        self.sessions.pop(full, None)
        if self.session == full and self.sessions:
            self.session = next(reversed(self.sessions))
        return not self.sessions

    @property
    def presence(self) -> domish.Element | None:
        """The presence shown to the room."""
        return self.sessions.get(self.session)

    def __repr__(self) -> str:
        return f"<Occupant {self.nick!r} {self.bare} {self.role} {sorted(self.sessions)}>"
