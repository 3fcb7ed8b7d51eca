"""Stream Management (XEP-0198, ``urn:xmpp:sm:3``): acknowledgements and resumption.

A bound client sends ``<enable xmlns='urn:xmpp:sm:3' resume='true'/>``;
the server answers ``<enabled id=… resume='true' max=…/>`` (``id`` and
``max`` only when resumption was asked for) and from then on:

* **counting**: ``<r/>`` from the client gets ``<a h=…/>``, the number of
  stanzas the server received from it since enabling; every stanza the
  server writes to the client is kept until the client's ``<a h=…/>``
  acknowledges it. The server asks (``<r/>``) itself after
  ``[sm] request_after_stanzas`` unacknowledged stanzas or
  ``request_after_seconds`` seconds, at the end of the burst that got there.
  An ``h`` beyond what was sent, or below what was acknowledged, closes the
  stream (``undefined-condition``); one that is not a number
  (``invalid-xml``). More than ``[sm] max_queue`` unacknowledged stanzas
  close it with ``resource-constraint``.
* **hibernation**: when the connection of a resumable session drops (or
  dies: no answer to the idle ping), the session stays bound, available
  and subscribed to everything, detached from any connection, for
  ``[sm] resume_timeout`` seconds; what arrives meanwhile is kept with the
  unacknowledged stanzas (it needs no other place: no carbon copy, no
  offline copy). Unavailable presence is broadcast when the window ends,
  not when the connection drops. At most ``[sm] max_hibernating`` sessions
  per account wait; one more ends the oldest.
* **resumption**: on a new authenticated stream, before binding,
  ``<resume previd=ID h=N/>`` for a waiting session of the same account
  acknowledges what the client got (``h``), answers ``<resumed previd=ID
  h=…/>`` and sends again exactly the stanzas not acknowledged, in order,
  each with an XEP-0203 delay of when it was first sent (iqs without).
  An unknown or expired id, another account's, or a session that ended
  gets ``<failed><item-not-found/></failed>`` and the client binds anew.
  If the old connection still seems alive it is closed (``conflict``).
* **the end**: when a session with stream management ends for good (its
  window expired, its client closed the stream, a new login took its
  resource, the server stops), what was never acknowledged is handled as
  undelivered: chat and normal messages go to offline storage (the
  ``offline`` module; the archive has them too), iq requests are answered
  ``recipient-unavailable``, the rest (presence, groupchat, headlines,
  errors, results) is dropped.

``<enable/>`` before binding or a second time gets ``<failed>`` with
``unexpected-request``. The stream feature ``<sm xmlns='urn:xmpp:sm:3'/>``
is offered with bind.

**Inline** (XEP-0388 SASL2, XEP-0386 Bind 2): ``<sm xmlns='urn:xmpp:sm:3'/>``
is offered in SASL2's ``<inline/>``; a ``<resume/>`` inside
``<authenticate/>`` is handled as above, its ``<resumed/>`` or ``<failed/>``
goes into SASL2's ``<success/>`` and the unacknowledged stanzas follow the
success; an ``<enable/>`` inside Bind 2's ``<bind/>`` answers
``<enabled/>`` inside ``<bound/>``.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.logs import logger
from xmppd.module import Inline, InlineResult, Module, Point, hook, inline_handler, nonza_handler
from xmppd.sm.session import Session
from xmppd.sm.stanzas import with_delay

log = logger(__name__)

NS_SM = "urn:xmpp:sm:3"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
#: ``h`` wraps at 2^32 (XEP-0198 §4); counts here never get near it.
MAX_H = 2**32 - 1


@dataclass
class SMSettings:
    """``[sm]``: stream management (XEP-0198)."""

    resume_timeout: float = setting(
        300.0, "seconds a dropped session waits to be resumed (XEP-0198)", positive=True,
        live=True)
    max_queue: int = setting(
        500, "unacknowledged stanzas per session before its stream is closed", minimum=1,
        live=True)
    request_after_stanzas: int = setting(
        5, "unacknowledged stanzas after which the server asks for an ack", minimum=1,
        live=True)
    request_after_seconds: float = setting(
        10.0, "seconds after which the server asks for an ack of what it sent", positive=True,
        live=True)
    max_hibernating: int = setting(
        10, "dropped sessions per account that wait to be resumed", minimum=1, live=True)


def _element(name: str, **attributes: str) -> domish.Element:
    element = domish.Element((NS_SM, name))
    for key, value in attributes.items():
        element[key] = value
    return element


def failed(condition: str) -> domish.Element:
    """``<failed><condition/></failed>``."""
    element = _element("failed")
    element.addElement((NS_STANZAS, condition))
    return element


def parse_h(element: domish.Element) -> int | None:
    """The ``h`` attribute as a number, None when missing or not a 32-bit count."""
    text = element.getAttribute("h") or ""
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_H else None


class Outbox:
    """One session's stream management: counts, unacknowledged stanzas, hibernation."""

    def __init__(self, module: StreamManagement, session: Session, resumable: bool):
        self.module = module
        self.session = session
        self.id = secrets.token_urlsafe(18) if resumable else None
        self.base = session.handled
        #: Stanzas the client acknowledged (h of its last <a/>).
        self.acked = 0
        #: (stanza, when it was first written), oldest first.
        self.queue: deque[tuple[domish.Element, float]] = deque()
        self.awaiting = False
        self.request_call: Any = None
        self.request_soon = False
        self.expiry: Any = None
        self.hibernating_since: float | None = None

    @property
    def handled(self) -> int:
        """Stanzas received from the client since enabling (the ``h`` we report)."""
        return (self.session.handled - self.base) & MAX_H

    @property
    def sent(self) -> int:
        """Stanzas written (or kept for the client) since enabling."""
        return self.acked + len(self.queue)

    def write(self, stanza: domish.Element) -> None:
        """Keep a stanza until it is acknowledged; write it if there is a connection."""
        self.queue.append((stanza, self.module.now()))
        if len(self.queue) > self.module.config.max_queue:
            self.module.overflow(self)
            return
        connection = self.session.connection
        if connection is not None and not connection.closing:
            connection.write_stanza(stanza)
            self.maybe_request()

    def send_nonza(self, element: domish.Element) -> None:
        """Write a stream management element (not counted) if there is a connection."""
        connection = self.session.connection
        if connection is not None and not connection.closing:
            connection.write_stanza(element)

    # -- acknowledgements ------------------------------------------------------------

    def maybe_request(self) -> None:
        """Ask for an ack at the end of this burst (enough unacknowledged), or after a while."""
        if self.awaiting:
            return
        settings = self.module.config
        soon = len(self.queue) >= settings.request_after_stanzas
        if self.request_call is not None:
            if not soon or self.request_soon:
                return
            self.request_call.cancel()  # the burst got there before the timer
        self.request_soon = soon
        self.request_call = self.module.server.reactor.callLater(
            0 if soon else settings.request_after_seconds, self.request)

    def request(self) -> None:
        """Send ``<r/>`` if something is unacknowledged and nothing is asked already."""
        self.request_call = None
        if self.queue and not self.awaiting and self.hibernating_since is None:
            self.awaiting = True
            self.send_nonza(_element("r"))

    def ack(self, h: int) -> bool:
        """The client got ``h`` stanzas: forget them. False when ``h`` is impossible."""
        if h < self.acked or h > self.sent:
            return False
        for _ in range(h - self.acked):
            self.queue.popleft()
        self.acked = h
        self.awaiting = False
        if self.queue:
            self.maybe_request()
        return True

    def cancel_timers(self) -> None:
        """Stop the ack request and expiry timers."""
        for call in (self.request_call, self.expiry):
            if call is not None and call.active():
                call.cancel()
        self.request_call = self.expiry = None


class StreamManagement(Module):
    """XEP-0198 for client streams: acks, hibernation, resumption."""

    name = "sm"
    settings = SMSettings
    stream_features = [(NS_SM, "sm")]

    def __init__(self, server, settings=None):
        super().__init__(server, settings)
        #: Sessions with stream management on -> their outbox.
        self.outboxes: dict[Session, Outbox] = {}
        #: Resumption id -> outbox (resumable sessions still bound).
        self.resumable: dict[str, Outbox] = {}

    def now(self) -> float:
        """The server clock."""
        return self.server.reactor.seconds()

    # -- enabling, acks ------------------------------------------------------------------

    def sasl2_features(self, negotiator: Any) -> list[domish.Element]:
        """Resumption can be inlined in SASL2 (XEP-0198 §5, XEP-0388)."""
        return [_element("sm")]

    @nonza_handler(NS_SM, "enable")
    def enable(self, session: Session, element: domish.Element) -> None:
        """Turn stream management on (once), resumable if asked."""
        if session in self.outboxes:
            session.connection.write_stanza(failed("unexpected-request"))
            return
        self.start_counting(session, element)
        self.outboxes[session].send_nonza(self._enabled(session))

    @inline_handler(Inline.BIND2, NS_SM, "enable", feature=NS_SM)
    def enable_inline(self, session: Session, element: domish.Element) -> domish.Element:
        """``<enable/>`` in Bind 2: ``<enabled/>`` goes into ``<bound/>``."""
        if session in self.outboxes:
            return failed("unexpected-request")
        self.start_counting(session, element)
        return self._enabled(session)

    def start_counting(self, session: Session, element: domish.Element) -> None:
        """Start counting for a session (resumable if the ``<enable/>`` asks)."""
        resumable = element.getAttribute("resume") in ("true", "1")
        outbox = Outbox(self, session, resumable)
        self.outboxes[session] = outbox
        session.outbox = outbox.write
        if outbox.id is not None:
            self.resumable[outbox.id] = outbox

    def _enabled(self, session: Session) -> domish.Element:
        outbox = self.outboxes[session]
        enabled = _element("enabled")
        if outbox.id is not None:
            enabled["id"] = outbox.id
            enabled["resume"] = "true"
            enabled["max"] = str(int(self.config.resume_timeout))
        return enabled

    @nonza_handler(NS_SM, "enable", before_bind=True)
    def enable_too_early(self, negotiator: Any, element: domish.Element) -> None:
        """``<enable/>`` needs a bound resource (XEP-0198 §3)."""
        negotiator.xmlstream.send(failed("unexpected-request"))

    @nonza_handler(NS_SM, "r")
    def request(self, session: Session, element: domish.Element) -> None:
        """The client asks how much we handled."""
        outbox = self.outboxes.get(session)
        if outbox is None:
            session.close("unsupported-stanza-type", "stream management is not enabled")
            return
        outbox.send_nonza(_element("a", h=str(outbox.handled)))

    @nonza_handler(NS_SM, "a")
    def acknowledged(self, session: Session, element: domish.Element) -> None:
        """The client tells how much it got."""
        outbox = self.outboxes.get(session)
        if outbox is None:
            session.close("unsupported-stanza-type", "stream management is not enabled")
            return
        h = parse_h(element)
        if h is None:
            session.close("invalid-xml", "missing or invalid 'h' attribute")
        elif not outbox.ack(h):
            session.close("undefined-condition",
                          f"acknowledged {h} stanzas; {outbox.acked} were acknowledged and "
                          f"{outbox.sent} sent")

    def overflow(self, outbox: Outbox) -> None:
        """Too many unacknowledged stanzas: close the stream (or end the waiting session)."""
        session = outbox.session
        log.info("{jid}: {n} stanzas unacknowledged; closing", jid=session.full,
                 n=len(outbox.queue))
        if outbox.id is not None:
            self.resumable.pop(outbox.id, None)  # this session cannot be resumed any more
            outbox.id = None
        if session.connection is not None and not session.connection.closing:
            session.close("resource-constraint", "too many unacknowledged stanzas")
        elif outbox.hibernating_since is not None:
            self.end(outbox)

    # -- hibernation and resumption ------------------------------------------------------

    @hook(Point.SESSION_INTERRUPTED)
    def interrupted(self, session: Session) -> bool | None:
        """A resumable session lost its connection: it waits (detached)."""
        outbox = self.outboxes.get(session)
        if outbox is None or outbox.id is None:
            return None
        session.detach()
        outbox.cancel_timers()
        outbox.awaiting = False
        outbox.hibernating_since = self.now()
        outbox.expiry = self.server.reactor.callLater(
            self.config.resume_timeout, self.end, outbox)
        log.info("{jid} waits {s} s to be resumed", jid=session.full,
                 s=self.config.resume_timeout)
        mine = (self.outboxes.get(s) for s in self.server.sessions.sessions_of(session.username))
        waiting = sorted((o for o in mine if o is not None and o.hibernating_since is not None),
                         key=lambda o: o.hibernating_since)
        for oldest in waiting[:max(0, len(waiting) - self.config.max_hibernating)]:
            self.end(oldest)
        return True

    def end(self, outbox: Outbox) -> None:
        """A waiting session's time is up: it ends for good."""
        outbox.cancel_timers()
        if outbox.id is not None:
            self.resumable.pop(outbox.id, None)
        self.server.sessions.unbind(outbox.session)

    @nonza_handler(NS_SM, "resume", before_bind=True)
    def resume(self, negotiator: Any, element: domish.Element) -> None:
        """Resume a waiting session of the same account on this stream."""
        result = self.resume_inline(negotiator, element)
        negotiator.xmlstream.send(result.element)
        if result.then is not None:
            result.then()

    @inline_handler(Inline.SASL2, NS_SM, "resume", priority=-10)
    def resume_inline(self, negotiator: Any, element: domish.Element) -> InlineResult:
        """Resume a waiting session: ``<resumed/>`` or ``<failed/>``, then the replay.

        The answer is the result's element; the unacknowledged stanzas are
        sent again by its ``then`` (after SASL2's ``<success/>`` when inlined).
        """
        outbox = self.resumable.get(element.getAttribute("previd") or "")
        session = outbox.session if outbox is not None else None
        if session is None or session.username != negotiator.username or not session.bound:
            return InlineResult(failed("item-not-found"))
        h = parse_h(element)
        if h is None or not (outbox.acked <= h <= outbox.sent):
            return InlineResult(failed("unexpected-request" if h is not None else "bad-request"))
        old = session.detach()
        if old is not None and not old.closing:
            old.stream_error("conflict", "the session was resumed on another connection")
        if not negotiator.resume(session):
            if outbox.hibernating_since is None:
                self.interrupted(session)  # its old connection was closed above: it waits
            return InlineResult(failed("resource-constraint"))
        outbox.cancel_timers()
        outbox.hibernating_since = None
        outbox.ack(h)
        outbox.awaiting = False
        log.info("{jid} resumed, {n} stanzas sent again", jid=session.full,
                 n=len(outbox.queue))
        resumed = _element("resumed", previd=outbox.id, h=str(outbox.handled))
        return InlineResult(resumed, lambda: self._replay(negotiator.xmlstream, outbox))

    def _replay(self, xs: Any, outbox: Outbox) -> None:
        session = outbox.session
        for stanza, stamp in list(outbox.queue):
            if stanza.name != "iq":
                stanza = with_delay(stanza, session.bare, stamp)
            xs.write_stanza(stanza)
        outbox.maybe_request()

    # -- the end -------------------------------------------------------------------------

    @hook(Point.SESSION_ENDED)
    def session_ended(self, session: Session) -> None:
        """Handle what the client never acknowledged as undelivered."""
        outbox = self.outboxes.pop(session, None)
        if outbox is None:
            return
        outbox.cancel_timers()
        session.outbox = None
        if outbox.id is not None:
            self.resumable.pop(outbox.id, None)
        if outbox.queue:
            log.info("{jid} ended with {n} unacknowledged stanzas", jid=session.full,
                     n=len(outbox.queue))
        manager = self.server.sessions
        for stanza, _ in outbox.queue:
            kind = stanza.getAttribute("type")
            if stanza.name == "message" and kind in (None, "chat", "normal"):
                manager.run(session.username, stanza, manager.undelivered,
                            session.username, stanza)
            elif stanza.name == "iq" and kind in ("get", "set"):
                manager.reply_error(stanza, "recipient-unavailable")
        outbox.queue.clear()

    @hook(Point.STOPPING)
    def stopping(self) -> None:
        """The server stops: waiting sessions end now (their messages go offline)."""
        for outbox in [o for o in self.outboxes.values() if o.hibernating_since is not None]:
            self.end(outbox)
