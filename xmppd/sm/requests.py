"""The server's own iq requests to clients (and others), and their answers.

Modules ask a client something (the ``caps`` module its disco#info) with
:meth:`SessionManager.request`; the answer comes back through the session
manager's iq routing (:meth:`PendingRequests.answer`), matched by id and by
both addresses so nobody else can answer for the asked entity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.errors import StanzaError
from xmppd.sm.iq import error_from_reply

if TYPE_CHECKING:
    from xmppd.sm.manager import SessionManager

#: How many iq requests of the server's own may wait for their answer at
#: once; beyond that a request fails at once.
MAX_PENDING = 10000


class PendingRequests:
    """The session manager's iq requests awaiting their answers."""

    def __init__(self, manager: SessionManager):
        self.manager = manager
        #: (id, normalised 'to', normalised 'from') -> Deferred.
        self.pending: dict[tuple[str, str, str], defer.Deferred] = {}
        #: Full JID -> the keys of the pending requests addressed to it.
        self._to: dict[str, set[tuple[str, str, str]]] = {}

    def send(self, stanza: domish.Element, timeout: float = 30.0) -> defer.Deferred:
        """Send an iq get/set and fire with its answer.

        The caller sets 'to' and 'from' (the server's domain or a local
        account's JID); an id is filled in if there is none. The Deferred
        fires with the result iq, or fails with a
        :class:`~xmppd.errors.StanzaError` read from an error reply (also
        ``recipient-unavailable`` when the addressed session ends first),
        with :class:`twisted.internet.defer.TimeoutError` after ``timeout``
        seconds on the manager's reactor, or with ``CancelledError`` when
        the caller cancels it or the manager stops. Only a reply with the
        request's id, *from* the request's 'to' and *to* its 'from'
        (normalised JIDs) answers it: anybody else's is not a match. At most
        :data:`MAX_PENDING` wait at once (then ``resource-constraint``).
        """
        kind = stanza.getAttribute("type")
        to = parse_jid(stanza.getAttribute("to"))
        sender = parse_jid(stanza.getAttribute("from"))
        if stanza.name != "iq" or kind not in ("get", "set") or to is None or sender is None:
            return defer.fail(ValueError("a request is an iq get/set with a valid 'to' and 'from'"))
        if not stanza.getAttribute("id"):
            stanza["id"] = self.manager.next_id("req")
        key = (stanza["id"], to.full(), sender.full())
        if key in self.pending:
            return defer.fail(ValueError(f"a request with id {stanza['id']!r} is pending"))
        if len(self.pending) >= MAX_PENDING:
            return defer.fail(StanzaError("resource-constraint", "too many requests pending"))
        d: defer.Deferred = defer.Deferred(lambda _: self._forget_request(key))
        self.pending[key] = d
        if to.resource is not None:
            self._to.setdefault(key[1], set()).add(key)
        d.addTimeout(timeout, self.manager.reactor)
        self.manager.route(stanza)
        return d

    def answer(self, stanza: domish.Element, sender: jid.JID, recipient: jid.JID | None) -> bool:
        """Hand an iq result/error to the request it answers; False if it answers none.

        A reply without 'to' from a local user's resource is taken as
        addressed to that user's account (RFC 6120 10.3.3).
        """
        if not self.pending:
            return False
        if recipient is not None:
            addressee = recipient.full()
        elif sender.host == self.manager.domain and sender.user:
            addressee = sender.userhost()
        else:
            return False
        key = (stanza.getAttribute("id"), sender.full(), addressee)
        d = self._forget_request(key)
        if d is None:
            return False
        if stanza.getAttribute("type") == "result":
            d.callback(stanza)
        else:
            d.errback(error_from_reply(stanza))
        return True

    def _forget_request(self, key: tuple[str, str, str]) -> defer.Deferred | None:
        d = self.pending.pop(key, None)
        keys = self._to.get(key[1])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._to[key[1]]
        return d

    def session_gone(self, full: str) -> None:
        """The session at that full JID went away: its pending requests fail now."""
        for key in list(self._to.get(full, ())):
            d = self._forget_request(key)
            if d is not None:
                d.errback(StanzaError("recipient-unavailable", "the session ended"))

    def cancel_all(self) -> None:
        """The session manager stops: every pending request is cancelled."""
        for pending in list(self.pending.values()):
            pending.cancel()
