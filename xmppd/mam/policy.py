"""What a personal archive keeps (XEP-0313 §5.1.1, XEP-0334) and its stanza-ids (XEP-0359).

:func:`archivable` is the one policy on a message's content: type ``chat``
or ``normal`` (an unknown type counts as ``normal``, RFC 6121 5.2.2) with
a body, a subject or another payload worth keeping: a ``<store/>`` hint,
an OMEMO (``eu.siacs.conversations.axolotl``, ``urn:xmpp:omemo:2``) or
XEP-0380 encrypted payload, a delivery receipt or its request
(XEP-0184), a chat marker (XEP-0333), an invitation (XEP-0249, or a
mediated XEP-0045 one), a Jingle Message Initiation (XEP-0353), a
retraction (XEP-0424) or a reaction (XEP-0444). Never ``groupchat`` (a
room's history is the room's archive), ``headline`` or ``error`` (Prosody
keeps bounces to full JIDs; the issue says never), never with
``<no-store/>``/``<no-permanent-store/>``, never a message carrying a
carbon (``<sent/>``/``<received/>``: only a server makes carbons, and
the original was archived where it passed). Chat states alone are not
kept. Whose preferences allow it is decided elsewhere (the ``mam`` module).

:func:`strip_stanza_ids` removes ``<stanza-id/>`` elements that claim to
come from an archive (its ``by``), whoever put them there;
:func:`add_stanza_id` stamps one. Both give the stanza a new children
list rather than changing the old one, which copies of the stanza
(carbons, offline storage) may share.
"""

from __future__ import annotations

from twisted.words.xish import domish

from xmppd.sm.stanzas import STANZA_NAMESPACES
from xmppd.stanza import escape_attribute, fast_element

NS_SID = "urn:xmpp:sid:0"
NS_HINTS = "urn:xmpp:hints"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


#: Namespaces in which any child makes a message worth archiving.
ARCHIVED_NAMESPACES = frozenset({
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
    "urn:xmpp:jingle-message:0",
    "urn:xmpp:jingle-message:1",
    "urn:xmpp:message-retract:0",
    "urn:xmpp:message-retract:1",
    "urn:xmpp:reactions:0",
    "jabber:x:conference",
    "urn:xmpp:eme:0",
})

#: (namespace, name) of encrypted payloads worth archiving.
ENCRYPTED = frozenset({
    ("eu.siacs.conversations.axolotl", "encrypted"),
    ("urn:xmpp:omemo:2", "encrypted"),
})

#: Types that are never archived.
NEVER_TYPES = frozenset({"groupchat", "headline", "error"})


def archivable(stanza: domish.Element) -> bool:
    """True if a message's type and content are worth archiving (see the module docstring)."""
    return examine(stanza)[0]


def examine(stanza: domish.Element) -> tuple[bool, bool]:
    """(:func:`archivable`, whether it carries any ``<stanza-id/>``), in one look at it."""
    if stanza.getAttribute("type") in NEVER_TYPES:
        return False, _has_stanza_id(stanza)
    worth = False
    stamped = False
    for child in stanza.children:
        if child.__class__ is str or isinstance(child, str):
            continue
        uri = child.uri
        name = child.name
        if uri == NS_HINTS:
            if name == "no-store" or name == "no-permanent-store":
                return False, _has_stanza_id(stanza)
            if name == "store":
                worth = True
        elif uri == NS_CARBONS:
            if name == "sent" or name == "received":
                return False, _has_stanza_id(stanza)
        elif uri in STANZA_NAMESPACES:
            if name == "body" or name == "subject":
                worth = True
        elif uri == NS_SID:
            if name == "stanza-id":
                stamped = True
        elif uri in ARCHIVED_NAMESPACES or (uri, name) in ENCRYPTED:
            worth = True
        elif uri == NS_MUC_USER and name == "x":
            if any(c.name == "invite" for c in child.elements()):
                worth = True
    return worth, stamped


def _has_stanza_id(stanza: domish.Element) -> bool:
    for child in stanza.children:
        if not isinstance(child, str) and child.name == "stanza-id" and child.uri == NS_SID:
            return True
    return False


def strip_stanza_ids(stanza: domish.Element, by: str) -> bool:
    """Remove every ``<stanza-id/>`` whose ``by`` is ``by``; True if there was one."""
    found = False
    for child in stanza.children:
        if (isinstance(child, domish.Element) and child.uri == NS_SID
                and child.name == "stanza-id" and _same_jid(child.getAttribute("by"), by)):
            found = True
            break
    if found:
        stanza.children = [
            c for c in stanza.children
            if not (isinstance(c, domish.Element) and c.uri == NS_SID
                    and c.name == "stanza-id" and _same_jid(c.getAttribute("by"), by))]
    return found


def _same_jid(value: str | None, bare: str) -> bool:
    # Archive JIDs are ours, normalised; a forged one may differ in case.
    return value is not None and (value == bare or value.lower() == bare.lower())


def stanza_id_element(by: str, archive_id: str) -> domish.Element:
    """``<stanza-id xmlns='urn:xmpp:sid:0' by=… id=…/>``."""
    return fast_element(NS_SID, "stanza-id", {"by": by, "id": archive_id})


def stanza_id_xml(by: str, archive_id: str) -> str:
    """:func:`stanza_id_element` as the XML text :func:`~xmppd.stanza.xml_text` writes."""
    return (f"<stanza-id xmlns='{NS_SID}' by='{escape_attribute(by)}' "
            f"id='{escape_attribute(archive_id)}'/>")


def add_stanza_id(stanza: domish.Element, by: str, archive_id: str) -> domish.Element:
    """Stamp a stanza-id on a stanza (a new children list); returns the element added."""
    element = stanza_id_element(by, archive_id)
    stanza.children = [*stanza.children, element]
    return element


def stanza_id_of(stanza: domish.Element, by: str) -> str | None:
    """The id of the stanza's ``<stanza-id/>`` by that archive, if any."""
    for child in stanza.elements():
        if child.uri == NS_SID and child.name == "stanza-id" and child.getAttribute("by") == by:
            return child.getAttribute("id")
    return None
