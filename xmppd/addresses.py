"""Parsing addresses (JIDs) cheaply and strictly.

Stringprep (nodeprep, nameprep, resourceprep) is the single most expensive
thing the server does per stanza, and the same few addresses recur on every
stanza of a conversation, so parsed JIDs are cached (bounded, LRU). The
parser is stricter than Twisted's: RFC 7622 forbids the empty localpart and
resourcepart that ``twisted.words.protocols.jabber.jid.JID`` accepts.

It is also more lenient in one respect. Twisted's stringprep is that of
Unicode 3.2 (RFC 3920's resourceprep), which refuses every character
assigned since, such as most emoji, although RFC 7622 (PRECIS
OpaqueString, on current Unicode) allows them in a resourcepart. A
resourcepart that fails resourceprep *only* because of such characters is
accepted as it is (:func:`relaxed_resourcepart`), so that the entity it is
meant for decides: a MUC room refuses such a nick itself, with an error
from the occupant JID the client asked for. Localparts and domainparts
stay strict, and so does every other check of the resourcepart
(prohibited characters, bidi, length).
"""

from __future__ import annotations

import stringprep
import unicodedata
from functools import lru_cache

from twisted.words.protocols.jabber import jid, xmpp_stringprep

#: resourceprep without its check for characters unassigned in Unicode 3.2.
_RESOURCEPREP_ASSIGNED_ONLY = xmpp_stringprep.Profile(
    mappings=jid.resourceprep.mappings,
    prohibiteds=jid.resourceprep.prohibiteds,
    check_unassigneds=False,
)

#: Categories (current Unicode) PRECIS's FreeformClass does not allow:
#: controls, format characters, surrogates, private use, unassigned, line
#: and paragraph separators.
_DISALLOWED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

#: Default-ignorable marks assigned after Unicode 3.2 (variation selectors).
_IGNORABLE_RANGES = ((0x180B, 0x180F), (0xE0100, 0xE01EF))

#: RFC 7622 3.1: each part is at most 1023 octets.
#: What Twisted's JID parsing raises for bad input: an empty label in a
#: domain ('a..b') makes its stringprep raise IndexError.
JID_ERRORS = (jid.InvalidFormat, UnicodeError, ValueError, IndexError)
MAX_PART_BYTES = 1023


def _newer_character_allowed(char: str) -> bool:
    """Whether a character unassigned in Unicode 3.2 may stand in a resourcepart today."""
    if unicodedata.category(char) in _DISALLOWED_CATEGORIES:
        return False
    point = ord(char)
    return not any(low <= point <= high for low, high in _IGNORABLE_RANGES)


def relaxed_resourcepart(resource: str) -> str | None:
    """The prepared resourcepart, letting through characters Unicode 3.2 lacks; else None.

    For a resourcepart that strict resourceprep refuses: it passes if
    resourceprep's mapping, normalisation, prohibited-character and bidi
    rules all hold and its only fault is characters unassigned in Unicode
    3.2 that current Unicode assigns to letters, marks, numbers, symbols,
    punctuation or spaces (not controls, format characters, private use or
    variation selectors). Not empty, at most 1023 octets.
    """
    try:
        prepared = _RESOURCEPREP_ASSIGNED_ONLY.prepare(resource)
    except UnicodeError:
        return None
    if not prepared or len(prepared.encode("utf-8")) > MAX_PART_BYTES:
        return None
    newer = [c for c in prepared if stringprep.in_table_a1(c)]
    if not newer or not all(_newer_character_allowed(c) for c in newer):
        return None
    return prepared


def relaxed_jid(address: str) -> jid.JID | None:
    """A JID whose resourcepart only :func:`relaxed_resourcepart` accepts; else None.

    The localpart and domainpart are parsed strictly (and must not be
    empty when their separators are there).
    """
    bare, separator, resource = address.partition("/")
    if not separator or not resource:
        return None
    try:
        base = jid.JID(bare)
    except JID_ERRORS:
        return None
    if base.user is None and "@" in bare:
        return None
    prepared = relaxed_resourcepart(resource)
    if prepared is None:
        return None
    parsed = jid.JID(tuple=(base.user, base.host, None))
    parsed.resource = prepared
    return parsed


@lru_cache(maxsize=20000)
def parse_jid(address: str | None) -> jid.JID | None:
    """Parse and normalise a JID string; None if it is missing or invalid (cached).

    A resourcepart that only newer Unicode allows is accepted (see the
    module docstring). The returned JID is shared between callers: never
    modify it.
    """
    if not address:
        return None
    try:
        parsed = jid.JID(address)
    except JID_ERRORS:
        return relaxed_jid(address)
    if parsed.user is None and "@" in address.split("/", 1)[0]:
        return None
    if parsed.resource is None and "/" in address:
        return None
    if not _parts_fit(parsed):
        return None
    return parsed


def _parts_fit(address: jid.JID) -> bool:
    """RFC 7622 §3.2-3.4: no part longer than 1023 octets (Twisted does not check)."""
    return all(part is None or len(part.encode("utf-8")) <= MAX_PART_BYTES
               for part in (address.user, address.host, address.resource))


def stanza_domain(address: str) -> str:
    """The domain part of a JID string, without normalisation (fast path)."""
    bare = address.split("/", 1)[0]
    return bare.rpartition("@")[2]


def normalised_domain(address: str) -> str | None:
    """The nameprep-normalised domain of a JID string, or None if invalid."""
    parsed = parse_jid(address)
    return parsed.host if parsed is not None else None
