"""Parsing addresses (JIDs) cheaply and strictly.

Stringprep (nodeprep, nameprep, resourceprep) is the single most expensive
thing the server does per stanza, and the same few addresses recur on every
stanza of a conversation, so parsed JIDs are cached (bounded, LRU). The
parser is stricter than Twisted's: RFC 7622 forbids the empty localpart and
resourcepart that ``twisted.words.protocols.jabber.jid.JID`` accepts.
"""

from __future__ import annotations

from functools import lru_cache

from twisted.words.protocols.jabber import jid


@lru_cache(maxsize=20000)
def parse_jid(address: str | None) -> jid.JID | None:
    """Parse and normalise a JID string; None if it is missing or invalid (cached).

    The returned JID is shared between callers: never modify it.
    """
    if not address:
        return None
    try:
        parsed = jid.JID(address)
    except (jid.InvalidFormat, UnicodeError, ValueError):
        return None
    if parsed.user is None and "@" in address.split("/", 1)[0]:
        return None
    if parsed.resource is None and "/" in address:
        return None
    return parsed


def stanza_domain(address: str) -> str:
    """The domain part of a JID string, without normalisation (fast path)."""
    bare = address.split("/", 1)[0]
    return bare.rpartition("@")[2]


def normalised_domain(address: str) -> str | None:
    """The nameprep-normalised domain of a JID string, or None if invalid."""
    parsed = parse_jid(address)
    return parsed.host if parsed is not None else None
