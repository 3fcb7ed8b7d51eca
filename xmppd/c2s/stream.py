"""One client connection (RFC 6120): parsing, limits, output, closing.

The c2s pieces, from the socket up:

* :class:`C2SStream` (here) — a ``twisted.words`` ``XmlStream`` with a restricted,
  bounded parser (:mod:`xmppd.c2s.xmlparser`). It turns every parse error
  into a stream error the client actually receives, processes one element
  at a time (elements arriving while an asynchronous step runs are queued),
  and never lets an exception escape: unexpected ones are logged and close
  that stream with ``internal-server-error``.
* :class:`~xmppd.c2s.negotiation.C2SAuthenticator` — our ``ListenAuthenticator``: stream header
  checks, stream features, STARTTLS, SASL (:mod:`xmppd.c2s.sasl`), pre-auth
  registration (:mod:`xmppd.c2s.registration`) and resource binding
  (:mod:`xmppd.c2s.bind`).
* the stream is the :class:`~xmppd.sm.session.Connection` under a bound
  :class:`~xmppd.sm.session.Session` (``write_stanza``, ``stream_error``):
  the session manager owns the session; client stanzas enter the server
  through ``Session.receive``.
* :class:`~xmppd.c2s.factory.C2SFactory` — the server factory, holding configuration
  and limits;
  its :class:`~xmppd.c2s.guard.ClientGuard` (shared by every c2s listener of
  a server) holds the limits that span connections: connections per address,
  sessions per account, back-off after failed authentication.

Per-connection limits: the parser's size, depth, attribute and element caps;
a negotiation timeout (authenticate and bind in time, else
``connection-timeout``); once bound, an idle timeout after which the server
sends an XEP-0199 ping and drops a peer that stays silent
(``connection-timeout``); and a token bucket on bytes read that pauses
reading (never drops data) while a client sends faster than its rate.

Stream errors are written in one place, :meth:`C2SStream.stream_error`
(Twisted's ``sendStreamError`` is routed there too).
"""

from __future__ import annotations

import secrets
import socket
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.protocols.policies import TimeoutMixin
from twisted.python import failure
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish

from xmppd.c2s.xmlparser import (
    RestrictedElementStream,
    StreamParseError,
)
from xmppd.logs import logger, peer_of
from xmppd.ratelimit import TokenBucket
from xmppd.sm.session import Session
from xmppd.stanza import release, remembered_xml, stream_child_text, xml_text

if TYPE_CHECKING:
    from xmppd.c2s.factory import C2SFactory
    from xmppd.c2s.negotiation import C2SAuthenticator

NS_CLIENT = "jabber:client"
NS_STREAMS = xmlstream.NS_STREAMS
NS_PING = "urn:xmpp:ping"

# Stanzas built by other parts (S2S, components) may carry these namespaces;
# on a client stream they are written as jabber:client.
FOREIGN_STANZA_NAMESPACES = ("jabber:server", "jabber:component:accept")

log = logger(__name__)


class _StopParsing(Exception):
    """Raised inside parser callbacks to stop parsing a closing stream."""


def _new_stream_id() -> str:
    return secrets.token_hex(16)


def keepalive(transport: Any, idle: int) -> None:
    """TCP keepalive on a client socket: probes after ``idle`` s of silence (0: off).

    Then every 60 s, 4 times, before the kernel drops the connection (where
    the platform lets us set these; elsewhere its defaults apply).
    """
    if not idle:
        return
    try:
        transport.setTcpKeepAlive(True)
        sock, inner = transport.getHandle(), transport
        while not isinstance(sock, socket.socket) and hasattr(inner, "transport"):
            inner = inner.transport  # under a TLS wrapper (direct TLS): the TCP one
            sock = inner.getHandle()
        for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", 60), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    except (AttributeError, OSError):
        pass  # not a TCP socket (tests' fake transports, a UNIX socket)


class C2SStream(xmlstream.XmlStream, TimeoutMixin):
    """One client connection: parsing, limits, error handling, closing."""

    namespace = NS_CLIENT

    def __init__(self, authenticator: C2SAuthenticator, factory: C2SFactory):
        self.factory = factory
        self.closing = False
        self.lost = False
        self.session: Session | None = None
        #: Why the stream ended: None while open or when the connection just
        #: dropped, "client-closed" for the client's closing tag, "closed"
        #: when we closed it cleanly, else the stream error's condition.
        self.end_reason: str | None = None
        self.lang = "en"
        self.peer: str | None = None
        self.peer_host: str | None = None
        #: How often reading was paused by the read-rate limit.
        self.read_pauses = 0
        self._queue: list[domish.Element] = []
        self._busy = False
        self._negotiation_timer: Any = None
        self._abort_timer: Any = None
        self._resume_timer: Any = None
        self._footer_sent = False
        self._counted = False
        self._ping_id: str | None = None
        self._ping_outstanding = False
        #: Nothing received since the factory's last hibernation sweep.
        self._quiet = False
        self._read_bucket: TokenBucket | None = None
        limits = factory.limits
        if limits.read_rate:
            self._read_bucket = TokenBucket(limits.read_rate, limits.read_burst, factory.reactor)
        super().__init__(authenticator)

    # -- connection ------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        """True when the stream ended without a close: dropped, or dead (no ping answer)."""
        return self.end_reason is None or self.end_reason == "connection-timeout"

    @property
    def peer_address(self) -> str:
        """The client's address, for log messages."""
        return peer_of(self.transport)

    def connectionMade(self) -> None:
        """Set up the parser, start the negotiation timer, apply the per-address limit."""
        factory = self.factory
        factory.streams.add(self)
        try:
            self.peer_host = getattr(self.transport.getPeer(), "host", None)
        except Exception:
            self.peer_host = None
        keepalive(self.transport, factory.limits.tcp_keepalive)
        admitted = factory.guard.connection_opened(self.peer_host)
        self._counted = True
        timeout = factory.limits.negotiation_timeout
        if timeout:
            self._negotiation_timer = factory.reactor.callLater(
                timeout, self._negotiation_timed_out
            )
        # Set up the parser (and TLS on a direct-TLS port) first, so that a
        # refusal below reaches the client as a proper stream error.
        self._guard(super().connectionMade)
        if not admitted:
            log.info(
                "refusing a connection from {peer}: too many from that address",
                peer=self.peer_address,
            )
            self.stream_error("policy-violation", "too many connections from your address")

    def connectionLost(self, reason: failure.Failure) -> None:
        """Cancel timers, release limits and tell the session manager (once) if bound."""
        self.closing = True
        self.lost = True
        factory = self.factory
        factory.streams.discard(self)
        if self._counted:
            self._counted = False
            factory.guard.connection_closed(self.peer_host)
        factory.guard.release_session(self.authenticator.username, self)
        for timer in (self._negotiation_timer, self._abort_timer, self._resume_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._resume_timer = None
        self.setTimeout(None)
        self._queue = []
        if self.stream is not None:
            self.stream.close()
        try:
            super().connectionLost(reason)
        except Exception:
            log.failure("error in a stream-end observer")
        self.authenticator.unbind()

    def _negotiation_timed_out(self) -> None:
        self._negotiation_timer = None
        self.stream_error("connection-timeout", "stream negotiation took too long")

    def bound(self, session: Session) -> None:
        """The stream has a bound resource: stanzas now go to the session."""
        self.session = session
        if self._negotiation_timer is not None and self._negotiation_timer.active():
            self._negotiation_timer.cancel()
        self._negotiation_timer = None
        if self.factory.limits.idle_timeout:
            self.setTimeout(self.factory.limits.idle_timeout)
        self.dispatch(self, xmlstream.STREAM_AUTHD_EVENT)

    # -- idle detection (XEP-0199) -------------------------------------------

    def callLater(self, period: float, func: Any) -> Any:
        """TimeoutMixin's scheduler: the factory's reactor (a fake clock in tests)."""
        return self.factory.reactor.callLater(period, func)

    def timeoutConnection(self) -> None:
        """Idle too long: ping once; no answer within ``ping_timeout``: drop."""
        if self.closing:
            return
        ping_timeout = self.factory.limits.ping_timeout
        if not self._ping_outstanding and self.session is not None and \
                self.factory.session_manager.let_idle(self.session):
            self.setTimeout(self.factory.limits.idle_timeout)  # asleep: ask again later
            return
        if self._ping_outstanding or not ping_timeout or self.session is None:
            self.stream_error("connection-timeout", "the client stopped answering")
            return
        self._ping_id = "ping-" + secrets.token_hex(8)
        self._ping_outstanding = True
        iq = domish.Element((NS_CLIENT, "iq"))
        iq["type"] = "get"
        iq["id"] = self._ping_id
        iq["from"] = self.factory.domain
        iq["to"] = self.session.jid.full()
        iq.addElement((NS_PING, "ping"))
        self.write_stanza(iq)
        self.setTimeout(ping_timeout)

    def _heard_from_peer(self) -> None:
        if self._ping_outstanding:
            self._ping_outstanding = False
            self.setTimeout(self.factory.limits.idle_timeout or None)
        elif self.timeOut:
            self.resetTimeout()

    def is_ping_reply(self, stanza: domish.Element) -> bool:
        """True for the client's answer (result or error) to our last ping."""
        return (
            self._ping_id is not None
            and stanza.name == "iq"
            and stanza.getAttribute("type") in ("result", "error")
            and stanza.getAttribute("id") == self._ping_id
            and stanza.getAttribute("to") in (None, self.factory.domain)
        )

    # -- read-rate limit ---------------------------------------------------------

    def _throttle(self, size: int) -> None:
        bucket = self._read_bucket
        if bucket is None:
            return
        delay = bucket.consume(size)
        if delay > 0 and self._resume_timer is None and not self.closing:
            self.read_pauses += 1
            self.factory.read_pauses += 1
            self.transport.pauseProducing()
            self._resume_timer = self.factory.reactor.callLater(delay, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume_timer = None
        if self.closing or self._read_bucket is None:
            return
        delay = self._read_bucket.wait()
        if delay > 0:
            self._resume_timer = self.factory.reactor.callLater(delay, self._resume_reading)
            return
        self.transport.resumeProducing()

    # -- parsing -----------------------------------------------------------------

    def _initializeStream(self) -> None:
        old = self.stream
        if old is not None:
            old.close()
        self._queue = []
        factory = self.factory
        self.stream = RestrictedElementStream(
            max_stanza_size=factory.limits.max_stanza_size,
            max_depth=factory.limits.max_depth,
            max_attributes=factory.limits.max_attributes,
            max_elements=factory.limits.max_elements,
        )
        self.stream.DocumentStartEvent = self.onDocumentStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = self.onDocumentEnd

    def hibernate_if_quiet(self) -> bool:
        """The factory's sweep: free the parser if nothing arrived since the last sweep.

        True when a parser was freed now.
        """
        if not self._quiet:
            self._quiet = True
            return False
        if self.closing:
            return False
        return self._release_parser()

    def _release_parser(self) -> bool:
        stream = self.stream
        if stream is None or stream.hibernating:
            return False
        return stream.hibernate()  # does nothing in the middle of a stanza

    def dataReceived(self, data: bytes) -> None:
        """Parse bytes; any problem becomes a stream error sent to the client."""
        self._quiet = False
        if self.closing or self.stream is None:
            return
        parser = self.stream
        try:
            self._heard_from_peer()
            if self.rawDataInFn:
                self.rawDataInFn(data)
            parser.parse(data)
        except _StopParsing:
            pass
        except StreamParseError as e:
            if parser is self.stream:
                self.stream_error(e.condition, e.text)
        except Exception:
            log.failure("unexpected error while parsing a client stream")
            self.stream_error("internal-server-error")
        self._throttle(len(data))

    def onDocumentStart(self, rootElement: domish.Element) -> None:
        """The client's stream header: let the authenticator check it."""
        try:
            self.dispatch(self, xmlstream.STREAM_START_EVENT)
            self.authenticator.streamStarted(rootElement)
        except Exception:
            log.failure("unexpected error handling a stream header")
            self.stream_error("internal-server-error")
        if self.closing:
            raise _StopParsing()

    def onElement(self, element: domish.Element) -> None:
        """A top-level element: process it now, or queue it behind a busy step."""
        if self.closing:
            raise _StopParsing()
        if self._busy:
            if len(self._queue) >= self.factory.max_pending:
                self.stream_error("policy-violation", "too many stanzas sent ahead")
                raise _StopParsing()
            self._queue.append(element)
            return
        self._process(element)
        if self.closing:
            raise _StopParsing()

    def onDocumentEnd(self) -> None:
        """The client closed its stream: close ours."""
        if self.end_reason is None:
            self.end_reason = "client-closed"
        self.close_stream()
        raise _StopParsing()

    def _process(self, element: domish.Element) -> None:
        try:
            result = self.authenticator.handle_element(element)
        except Exception:
            log.failure("unexpected error handling a client element")
            self.stream_error("internal-server-error")
            return
        if isinstance(result, defer.Deferred):
            self._busy = True
            result.addErrback(self._unexpected)
            result.addBoth(self._step_finished)

    def _unexpected(self, reason: failure.Failure) -> None:
        log.failure("unexpected error in an asynchronous stream step", reason)
        self.stream_error("internal-server-error")

    def _step_finished(self, _: object) -> None:
        self._busy = False
        while self._queue and not self._busy and not self.closing:
            self._process(self._queue.pop(0))

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.failure("unexpected error in a client stream")
            self.stream_error("internal-server-error")

    # -- output ----------------------------------------------------------------

    def send(self, obj: Any) -> None:
        """Write to the client; nothing goes out after our closing tag.

        An element's tree is released (:func:`xmppd.stanza.release`) once written.
        """
        if self._footer_sent:
            return
        if obj.__class__ is str:  # what Twisted's send does with text, minus two interface checks
            data = obj.encode("utf-8")
            if self.rawDataOutFn:
                self.rawDataOutFn(data)
            self.transport.write(data)
            return
        if obj.__class__ is domish.Element:
            self.send(self.element_text(obj))
            release(obj)
            return
        super().send(obj)

    def element_text(self, element: domish.Element) -> str:
        """How this stream writes a stream-level element (``<stream:features>``, a SASL step)."""
        return stream_child_text(element, self.namespace)

    def sendFooter(self) -> None:
        """Send our closing tag (once)."""
        if not self._footer_sent:
            super().sendFooter()
            self._footer_sent = True

    def sendHeader(self) -> None:
        """Send our stream header with a fresh stream id."""
        self.sid = _new_stream_id()
        attributes = [
            ("xmlns", NS_CLIENT),
            ("xmlns:stream", NS_STREAMS),
            ("id", self.sid),
            ("from", self.factory.domain),
        ]
        if self.peer:
            attributes.append(("to", self.peer))
        attributes += [("version", "1.0"), ("xml:lang", self.lang)]
        header = "".join(f" {k}='{domish.escapeToXml(v, 1)}'" for k, v in attributes)
        self.send(f"<?xml version='1.0'?><stream:stream{header}>")
        self._headerSent = True

    def write_stanza(self, element: domish.Element) -> None:
        """Serialise a stanza for this client (what it says is not changed).

        Its tree is released (:func:`xmppd.stanza.release`) once serialised
        (text remembered for it was made from a tree already released, or
        from a parsed one, which is no cycle).
        """
        if self.closing:
            return
        default = element.defaultUri
        if default not in FOREIGN_STANZA_NAMESPACES:
            default = self.namespace
        # A stanza in a foreign stanza namespace is written as if that were
        # the stream's (so it reads as jabber:client here).
        xml = remembered_xml(element, default)
        if xml is not None:
            self.send(xml)
        else:
            self.send(xml_text(element, None, default))
            release(element)

    def stream_error(self, condition: str, text: str | None = None) -> None:
        """Send a stream error and close (no-op if already closing)."""
        if self.closing:
            return
        self.closing = True
        self.end_reason = condition
        log.info(
            "closing client stream from {peer}: {condition}",
            peer=self.peer_address,
            condition=condition,
        )
        if not self._headerSent:
            self.sendHeader()
        self.send(error.StreamError(condition, text).getElement())
        self.sendFooter()
        self._shutdown()

    def sendStreamError(self, streamError: error.StreamError) -> None:
        """Twisted's API for stream errors, routed through :meth:`stream_error`."""
        self.stream_error(streamError.condition, streamError.text)

    def close_stream(self) -> None:
        """Close the stream cleanly (our closing tag, then the connection)."""
        if self.closing:
            return
        self.closing = True
        if self.end_reason is None:
            self.end_reason = "closed"
        if not self._headerSent:
            self.sendHeader()
        self.sendFooter()
        self._shutdown()

    def _shutdown(self) -> None:
        self._queue = []
        self.setTimeout(None)
        if self._resume_timer is not None:
            # Read again so that the close (e.g. TLS close_notify) can finish.
            if self._resume_timer.active():
                self._resume_timer.cancel()
            self._resume_timer = None
            self.transport.resumeProducing()
        transport = self.transport
        if (
            self.factory.close_timeout
            and not getattr(transport, "TLS", False)
            and hasattr(transport, "loseWriteConnection")
        ):
            # Plain TCP: close only our side and go on reading (and
            # discarding) until the client closes too (or close_timeout).
            # Closing a socket that still has unread input resets the
            # connection, and the client would lose the stream error we just
            # wrote. (TLS already waits for the client's close_notify.)
            transport.loseWriteConnection()
        else:
            transport.loseConnection()
        if self.factory.close_timeout and not self.lost:
            self._abort_timer = self.factory.reactor.callLater(
                self.factory.close_timeout, self._abort
            )

    def _abort(self) -> None:
        self._abort_timer = None
        if not self.lost:
            self.transport.abortConnection()
