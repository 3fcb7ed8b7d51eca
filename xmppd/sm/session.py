"""A bound resource, owned by the session manager, apart from its connection.

The verbs, one per direction:

* :meth:`Session.receive` — a stanza *from* the client enters the server
  (the one entry point: every transport calls it, c2s today, WebSocket
  and BOSH later). It stamps 'from', applies the RFC 6120 checks every
  transport shares, and hands the stanza to the session manager, whose
  modules see it at :attr:`~xmppd.module.Point.CLIENT_STANZA` before it is
  routed.
* :meth:`Session.deliver` — a stanza *to* the client: the "about to
  deliver" hooks run (the session manager's ``deliver``), then the
  connection writes it.
* ``route`` (session manager, router) — towards another address.

A session outlives its connection: :meth:`attach` and :meth:`detach` swap
the transport underneath (the seam XEP-0198 resumption needs); while
detached, deliveries are dropped (stream management will queue them).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.c2s import bind
from xmppd.errors import StanzaError, error_reply
from xmppd.sm.stanzas import result_for

#: Stanzas clients sent / were sent, by element name (the metrics read them).
STANZAS_IN: Counter[str] = Counter()
STANZAS_OUT: Counter[str] = Counter()

IQ_TYPES = ("get", "set", "result", "error")


class Connection(Protocol):
    """What a session needs of its transport."""

    closing: bool

    def write_stanza(self, stanza: domish.Element) -> None:
        """Serialise a stanza to the client."""

    def stream_error(self, condition: str, text: str | None = None) -> None:
        """Close the stream with a stream error."""


class Session:
    """One bound resource: its address, presence state and connection.

    ``presence`` is the last available presence the resource broadcast
    (kept to answer probes), ``directed`` the addresses it sent directed
    available presence to (they get unavailable presence when it goes away),
    ``interested`` whether it requested the roster (roster pushes go only to
    interested resources, RFC 6121 2.1.5); ``bound`` turns False when the
    session manager forgets the session; ``handled`` counts the stanzas the
    client sent; ``outbox``, when set, takes what is written to the client
    (stream management).
    """

    __slots__ = (
        "manager",
        "connection",
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
        "outbox",
        "handled",
    )

    def __init__(self, manager: Any, address: jid.JID, connection: Connection | None = None):
        self.manager = manager
        self.connection = connection
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
        #: Stream management's writer while it is on (see :meth:`write`).
        self.outbox: Any = None
        #: Stanzas received from the client (XEP-0198 counts them).
        self.handled = 0

    def __repr__(self) -> str:
        return f"<Session {self.full} available={self.available} priority={self.priority}>"

    # -- the connection underneath -------------------------------------------------

    def attach(self, connection: Connection) -> None:
        """Put a (new) connection under the session."""
        self.connection = connection

    def detach(self) -> Connection | None:
        """Take the connection away; the session itself stays."""
        connection, self.connection = self.connection, None
        return connection

    @property
    def closed(self) -> bool:
        """True while no open connection is attached."""
        return self.connection is None or self.connection.closing

    def close(self, condition: str, text: str | None = None) -> None:
        """End the client's stream with a stream error (e.g. ``conflict``)."""
        if self.connection is not None:
            self.connection.stream_error(condition, text)

    # -- to the client --------------------------------------------------------------

    def deliver(self, stanza: domish.Element) -> None:
        """Give a stanza to the client, through the "about to deliver" hooks."""
        self.manager.deliver(self, stanza)

    def write(self, stanza: domish.Element) -> None:
        """Write a stanza to the connection, past the hooks (the manager's last step).

        With stream management on (XEP-0198), ``outbox`` takes it instead:
        it keeps the stanza until the client acknowledges it, and writes it
        when there is a connection.
        """
        STANZAS_OUT[stanza.name] += 1
        if self.outbox is not None:
            self.outbox(stanza)
        elif self.connection is not None:
            self.connection.write_stanza(stanza)

    # -- from the client ------------------------------------------------------------------

    def receive(self, stanza: domish.Element) -> None:
        """A stanza the client sent: count, stamp, check, hand to the session manager.

        Bad addressing or a malformed iq is answered here (RFC 6120 8.1,
        8.2.3); a second bind is ``not-allowed``; the legacy session
        request (RFC 3921) gets its empty result.
        """
        self.handled += 1
        STANZAS_IN[stanza.name] += 1
        kind = stanza.getAttribute("type")
        stanza["from"] = self.full
        to = stanza.getAttribute("to")
        if to is not None:
            # One cached parser for the whole server (xmppd.addresses): a
            # resourcepart only newer Unicode allows (an emoji MUC nick) is
            # kept for its destination to judge.
            address = parse_jid(to)
            if address is None:
                reply = error_reply(stanza, StanzaError("jid-malformed"))
                if reply is not None:
                    reply["from"] = self.manager.domain  # not the bad 'to'
                    self.write(reply)
                return
            stanza["to"] = address.full()
        if stanza.name == "iq":
            if not stanza.getAttribute("id") or kind not in IQ_TYPES:
                if kind != "error":
                    self._refuse(stanza, "bad-request", "iq needs an id and a valid type")
                return
            if kind == "get" or kind == "set":
                if len(list(stanza.elements())) != 1:
                    self._refuse(stanza, "bad-request", "iq get/set needs one payload")
                    return
                if bind.is_bind_request(stanza):
                    self._refuse(stanza, "not-allowed", "a resource is already bound")
                    return
                if bind.is_session_request(stanza):
                    self.write(result_for(stanza))
                    return
        self.manager.from_client(self, stanza)

    def _refuse(self, stanza: domish.Element, condition: str, text: str) -> None:
        reply = error_reply(stanza, StanzaError(condition, text))
        if reply is not None:
            self.write(reply)
