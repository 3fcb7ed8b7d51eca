"""Last activity (XEP-0012): the server's uptime, and when a user was last seen.

* To the server: ``seconds`` since the server started.
* To a user's bare JID, from the user or a contact subscribed to the user's
  presence: ``0`` while the user has an available resource, else the
  seconds since the last resource went unavailable, with the status text of
  that unavailable presence. Anyone else gets ``forbidden`` (XEP-0012 §6),
  whether or not the account exists.

The last logout is kept in the module's own table, so it survives
restarts; it is deleted with the account. Status texts are cut to
:data:`MAX_STATUS` characters.
"""

from __future__ import annotations

import sqlite3

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.errors import StanzaError
from xmppd.module import IQRequest, Module, Point, Scope, hook, iq_handler
from xmppd.sm.session import Session

NS_LAST = "jabber:iq:last"
MAX_STATUS = 1024

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS last_activity (
        username TEXT PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
        stamp REAL NOT NULL,
        status TEXT NOT NULL DEFAULT ''
    )
    """,
)


class LastActivity(Module):
    """jabber:iq:last for the server and on behalf of accounts."""

    name = "last"
    features = {Scope.SERVER: [NS_LAST], Scope.ACCOUNT: [NS_LAST]}
    schema = SCHEMA

    def startService(self) -> None:
        """Start counting the uptime."""
        super().startService()
        self.started = self.server.reactor.seconds()

    @iq_handler("get", NS_LAST, "query", Scope.SERVER)
    def uptime(self, request: IQRequest) -> domish.Element:
        """Seconds since the server started."""
        return _query(self.server.reactor.seconds() - self.started)

    @iq_handler("get", NS_LAST, "query", Scope.ACCOUNT)
    def last_seen(self, request: IQRequest) -> defer.Deferred:
        """When the account was last available, for itself and its contacts.

        Answered in the account's queue: after the presence it sent before
        the question arrived (its logout included) was processed.
        """
        return self.server.sessions.queues.run(request.account, self._last_seen, request)

    @defer.inlineCallbacks
    def _last_seen(self, request: IQRequest):
        sessions = self.server.sessions
        allowed = yield sessions.may_see_account(request.account, request.sender)
        if not allowed:
            raise StanzaError("forbidden")
        if sessions.available_of(request.account):
            return _query(0)
        rows = yield self.server.database.query(
            "SELECT stamp, status FROM last_activity WHERE username = ?", request.account)
        if not rows:
            return _query(0)
        stamp, status = rows[0]
        return _query(self.server.reactor.seconds() - stamp, status)

    @hook(Point.RESOURCE_UNAVAILABLE)
    def went_away(self, state: Session, stanza: domish.Element) -> defer.Deferred | None:
        """Record the time and status when a user's last available resource leaves."""
        if self.server.sessions.available_of(state.username):
            return None
        status = next((str(c) for c in stanza.elements() if c.name == "status"), "")
        return self.server.database.run(
            _record, state.username, self.server.reactor.seconds(), status[:MAX_STATUS])


def _record(cursor: sqlite3.Cursor, username: str, stamp: float, status: str) -> None:
    cursor.execute(
        "INSERT INTO last_activity (username, stamp, status) "
        "SELECT username, ?, ? FROM accounts WHERE username = ? "
        "ON CONFLICT(username) DO UPDATE SET stamp = excluded.stamp, status = excluded.status",
        (stamp, status, username),
    )


def _query(seconds: float, status: str = "") -> domish.Element:
    element = domish.Element((NS_LAST, "query"))
    element["seconds"] = str(max(0, int(seconds)))
    if status:
        element.addContent(status)
    return element
