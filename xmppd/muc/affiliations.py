"""Affiliations and roles (XEP-0045 section 5) and the rules for changing them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from xmppd.errors import StanzaError

OWNER = "owner"
ADMIN = "admin"
MEMBER = "member"
NONE = "none"
OUTCAST = "outcast"

AFFILIATIONS = (OWNER, ADMIN, MEMBER, NONE, OUTCAST)
AFFILIATION_RANK = {OUTCAST: -1, NONE: 0, MEMBER: 1, ADMIN: 2, OWNER: 3}

MODERATOR = "moderator"
PARTICIPANT = "participant"
VISITOR = "visitor"
ROLES = (MODERATOR, PARTICIPANT, VISITOR, NONE)
ROLE_RANK = {NONE: 0, VISITOR: 1, PARTICIPANT: 2, MODERATOR: 3}


@dataclass
class AffiliationEntry:
    """One user's affiliation with a room, the reason given and a reserved nick."""

    jid: str
    affiliation: str
    reason: str | None = None
    nick: str | None = None


class Affiliations:
    """The affiliation list of a room, keyed by bare JID string."""

    def __init__(self) -> None:
        self._entries: dict[str, AffiliationEntry] = {}

    def get(self, bare: str) -> str:
        """The affiliation of a bare JID ('none' if not listed)."""
        entry = self._entries.get(bare)
        return entry.affiliation if entry is not None else NONE

    def entry(self, bare: str) -> AffiliationEntry | None:
        """The full entry for a bare JID, or None."""
        return self._entries.get(bare)

    def set(
        self, bare: str, affiliation: str, reason: str | None = None, nick: str | None = None
    ) -> None:
        """Set (or, with 'none' and no reserved nick, remove) an affiliation."""
        old = self._entries.get(bare)
        if nick is None and old is not None and affiliation not in (NONE, OUTCAST):
            nick = old.nick
        if affiliation == NONE and nick is None:
            self._entries.pop(bare, None)
            return
        self._entries[bare] = AffiliationEntry(bare, affiliation, reason, nick)

    def set_nick(self, bare: str, nick: str | None) -> None:
        """Reserve (or, with None, release) a nick for a bare JID."""
        entry = self._entries.get(bare)
        if entry is None:
            if nick is not None:
                self._entries[bare] = AffiliationEntry(bare, NONE, None, nick)
            return
        entry.nick = nick
        if entry.affiliation == NONE and nick is None:
            del self._entries[bare]

    def with_affiliation(self, affiliation: str) -> list[AffiliationEntry]:
        """The entries with that affiliation, sorted by JID."""
        return sorted(
            (e for e in self._entries.values() if e.affiliation == affiliation),
            key=lambda e: e.jid,
        )

    def owners(self) -> list[str]:
        """Bare JIDs of the owners."""
        return [e.jid for e in self.with_affiliation(OWNER)]

    def nick_owner(self, nick: str) -> str | None:
        """The bare JID that registered ``nick``, or None."""
        for entry in self._entries.values():
            if entry.nick == nick:
                return entry.jid
        return None

    def __iter__(self) -> Iterator[AffiliationEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


def default_role(affiliation: str, moderated: bool) -> str:
    """The role an occupant gets on entering (XEP-0045 5.1.2 / 5.2.1)."""
    if affiliation in (OWNER, ADMIN):
        return MODERATOR
    if affiliation == OUTCAST:
        return NONE
    if moderated and affiliation != MEMBER:
        return VISITOR
    return PARTICIPANT


def check_affiliation_change(
    actor: str, target_old: str, target_new: str, *, actor_is_target: bool = False
) -> None:
    """Raise :class:`StanzaError` unless ``actor`` may change ``target_old`` to ``target_new``.

    Owners may change anyone's affiliation; admins may only move users among
    none, member and outcast (and never touch admins or owners); others may
    change nothing (XEP-0045 sections 9 and 10).
    """
    if target_new not in AFFILIATIONS:
        raise StanzaError("bad-request", "unknown affiliation")
    if actor == OWNER:
        return
    if actor == ADMIN:
        if target_old in (OWNER, ADMIN) or target_new in (OWNER, ADMIN):
            raise StanzaError("not-allowed" if target_old in (OWNER, ADMIN) else "forbidden")
        return
    raise StanzaError("forbidden")


def check_role_change(
    actor_role: str,
    actor_affiliation: str,
    target_role: str,
    target_affiliation: str,
    new_role: str,
) -> None:
    """Raise :class:`StanzaError` unless a moderator may give ``new_role`` to the target.

    Only moderators change roles; an occupant who is an admin or owner cannot
    be kicked, silenced or demoted by anyone (not-allowed); granting or
    revoking moderator status needs an admin or owner (XEP-0045 8 and 9).
    """
    if new_role not in ROLES:
        raise StanzaError("bad-request", "unknown role")
    if actor_role != MODERATOR:
        raise StanzaError("forbidden")
    if target_affiliation in (OWNER, ADMIN) and new_role != MODERATOR:
        raise StanzaError("not-allowed")
    if (new_role == MODERATOR or target_role == MODERATOR) and actor_affiliation not in (
        OWNER,
        ADMIN,
    ):
        raise StanzaError("forbidden")
