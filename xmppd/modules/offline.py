"""Offline messages (RFC 6121 8.5.2.2.1; XEP-0160, XEP-0203).

Chat and normal messages for an existing user with no available resource of
non-negative priority are stored complete, with an XEP-0203 delay element
stamped by the server, and delivered in order to the first resource that
sends initial presence with non-negative priority. The store has a limit
per user (:class:`~xmppd.storage.offline.OfflineStore`); past it, senders
get ``service-unavailable``.
"""

from datetime import UTC, datetime

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel.delay import Delay

from xmppd.logs import logger
from xmppd.module import Module, Point, Scope, hook
from xmppd.sm.session import Session
from xmppd.sm.stanzas import deserialise, readdress, serialise
from xmppd.storage.offline import OfflineStore

log = logger(__name__)

FEATURE_MSGOFFLINE = "msgoffline"
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


class Offline(Module):
    """Stores messages for absent users and hands them over at login."""

    name = "offline"
    features = {Scope.SERVER: [FEATURE_MSGOFFLINE]}

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        self.store = OfflineStore(server.database)

    @hook(Point.MESSAGE_UNDELIVERED)
    @defer.inlineCallbacks
    def keep(self, username: str, stanza: domish.Element):
        """Store a message (in the user's queue); bounce it if storage is full."""
        sessions = self.server.sessions
        if not worth_storing(stanza):
            return True
        now = datetime.fromtimestamp(self.server.reactor.seconds(), UTC)
        stored = readdress(stanza)
        stored.addChild(Delay(now, jid.JID(self.server.domain)).toElement())
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        kept = yield self.store.store(username, stamp, serialise(stored))
        if not kept:
            log.info("offline storage of {user} is full", user=username)
            sessions.reply_error(stanza, "service-unavailable", "offline storage is full")
        return True

    @hook(Point.SESSION_AVAILABLE)
    @defer.inlineCallbacks
    def deliver(self, state: Session):
        """Send the user's stored messages to a resource, then delete them."""
        rows = yield self.store.fetch(state.username)
        if not rows or not state.bound:
            return
        sessions = self.server.sessions
        for _, _, xml in rows:
            stanza = deserialise(xml)
            if stanza is None:
                log.warn("dropping an unreadable offline message of {user}", user=state.username)
                continue
            sessions.deliver(state, stanza)
        yield self.store.delete(state.username, [row[0] for row in rows])
