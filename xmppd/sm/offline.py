"""Offline messages: what is stored, how it is stamped, when it is delivered.

Chat and normal messages for an existing user with no available resource of
non-negative priority are stored complete, with an XEP-0203 delay element
stamped by the server, and delivered in order to the first resource that
sends initial presence with non-negative priority (RFC 6121 8.5.2.2.1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel.delay import Delay

from xmppd.logs import logger
from xmppd.sm.sessions import SessionState
from xmppd.sm.stanzas import deserialise, readdress, serialise

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager

log = logger(__name__)

NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_HINTS = "urn:xmpp:hints"
_NOT_CONTENT = {"thread"}


def worth_storing(stanza: domish.Element) -> bool:
    """True if a message carries content (not just chat states) and no no-store hint."""
    content = False
    for child in stanza.elements():
        if child.uri == NS_HINTS and child.name in ("no-store", "no-permanent-store"):
            return False
        if child.uri == NS_CHATSTATES or child.name in _NOT_CONTENT:
            continue
        content = True
    return content


class OfflineMessages:
    """Stores messages for absent users and hands them over at login."""

    def __init__(self, manager: SessionManager):
        self.manager = manager

    @defer.inlineCallbacks
    def store(self, username: str, stanza: domish.Element):
        """Store a message (runs in the user's queue); bounce it if impossible."""
        manager = self.manager
        exists = yield manager.user_exists(username)
        if not exists:
            manager.reply_error(stanza, "service-unavailable")
            return
        if not worth_storing(stanza):
            return
        now = datetime.fromtimestamp(manager.reactor.seconds(), UTC)
        stored = readdress(stanza)
        stored.addChild(Delay(now, jid.JID(manager.domain)).toElement())
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        kept = yield manager.offline_store.store(username, stamp, serialise(stored))
        if not kept:
            log.info("offline storage of {user} is full", user=username)
            manager.reply_error(stanza, "service-unavailable", "offline storage is full")

    @defer.inlineCallbacks
    def deliver(self, state: SessionState):
        """Send the user's stored messages to a resource, then delete them."""
        manager = self.manager
        rows = yield manager.offline_store.fetch(state.username)
        if not rows or not state.bound:
            return
        for _, _, xml in rows:
            stanza = deserialise(xml)
            if stanza is None:
                log.warn("dropping an unreadable offline message of {user}", user=state.username)
                continue
            manager.deliver(state, stanza)
        yield manager.offline_store.delete(state.username, [row[0] for row in rows])
