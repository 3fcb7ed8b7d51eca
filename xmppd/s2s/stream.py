"""One server-to-server stream (RFC 6120), initiating or receiving.

Both directions parse with the c2s parser (:mod:`xmppd.c2s.xmlparser`) and
its ``[limits]``; every parse problem becomes the stream error RFC 6120
names, and unexpected exceptions close the stream with
``internal-server-error``.

Receiving (another server connected to us): the header's ``to`` must be a
domain we serve (``host-unknown``), ``from`` a valid domain (``invalid-from``;
it may be missing, as from older servers, but then SASL EXTERNAL is not
offered); features offer STARTTLS (required unless encryption is not),
then SASL EXTERNAL when the peer's certificate verifies for its domain and
Server Dialback (XEP-0220) when allowed for it. ``db:result`` asks the
manager to verify the key with the originating domain's authoritative server;
``db:verify`` is answered from our own secret. Stanzas are accepted only once
a domain authenticated, only from domains this stream authenticated
(``invalid-from``), only to domains we serve (``host-unknown``) and with
valid addresses (``improper-addressing``); they reach the router in the
``jabber:client`` namespace, as stanzas from local clients do.

The receiving side's methods are in :mod:`xmppd.s2s.receiving`, the
initiating side's (we connect) in :mod:`xmppd.s2s.initiating`. The namespaces
and the stanza text for the wire are in :mod:`xmppd.s2s.wire`.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.python import failure
from twisted.words.xish import domish

from xmppd.c2s.xmlparser import RestrictedElementStream, StreamParseError
from xmppd.logs import logger, peer_of
from xmppd.ratelimit import TokenBucket
from xmppd.s2s.dialback import NS_DIALBACK, DialbackRefused
from xmppd.s2s.initiating import InitiatingSide
from xmppd.s2s.receiving import ReceivingSide
from xmppd.s2s.wire import (
    NS_SERVER,
    NS_STREAM_ERRORS,
    stanza_xml,
)
from xmppd.stanza import NS_STREAMS, escape_attribute

if TYPE_CHECKING:
    from xmppd.s2s.manager import S2SManager


#: Seconds a closing stream's peer has to close its side before the connection is dropped.
CLOSE_GRACE = 10.0

log = logger(__name__)


class _StopParsing(Exception):
    """Raised inside parser callbacks once the stream is closing."""


class S2SStream(InitiatingSide, ReceivingSide, protocol.Protocol):
    """One S2S connection; ``initiating`` says whether we opened it.

    An initiating stream is for one (local, remote) domain pair. A
    receiving one learns the remote domains as they authenticate
    (:attr:`authenticated`).
    """

    def __init__(self, manager: S2SManager, initiating: bool, local: str | None = None,
                 remote: str | None = None, direct_tls: bool = False):
        self.manager = manager
        self.reactor = manager.reactor
        self.initiating = initiating
        self.local = local
        self.remote = remote
        self.direct_tls = direct_tls
        #: The stream id: ours when receiving, the peer's when initiating.
        self.sid: str | None = None
        self.tls = False
        #: Remote domains authenticated on this stream (receiving side).
        self.authenticated: set[str] = set()
        #: How the initiating stream authenticated: "EXTERNAL", "dialback" or None.
        self.auth_method: str | None = None
        self.ready = False
        self.closing = False
        self.lost = False
        self.end_reason: str | None = None
        self.sasl_done = False
        self.cert_valid: bool | None = None
        self._parser: RestrictedElementStream | None = None
        self._footer_sent = False
        self._header_sent = False
        self._external_tried = False
        self._dialback_sent = False
        self._verify_ready = False
        self._idle_timer: Any = None
        self._abort_timer: Any = None
        self._resume_timer: Any = None
        #: How often reading was paused by the read-rate limit.
        self.read_pauses = 0
        #: When the connection was made (reactor seconds; None before), for ``xmppdctl s2s``.
        self.connected_at: float | None = None
        #: Stanzas received (accepted) and sent on this stream.
        self.stanzas_in = 0
        self.stanzas_out = 0
        settings = manager.settings
        self._read_bucket = (TokenBucket(settings.read_rate, settings.read_burst, self.reactor)
                             if settings.read_rate else None)
        #: The read-rate bucket shared with the other streams of the remote domain
        #: (set once the domain is authenticated).
        self.domain_bucket: TokenBucket | None = None
        self.domain_stanza_bucket: TokenBucket | None = None
        #: Bytes read from the peer.
        self.bytes_read = 0
        #: After the TLS handshake: the name the peer asked for (SNI) and the
        #: protocol agreed by ALPN (None: none).
        self.server_name: str | None = None
        self.alpn: str | None = None
        self._negotiation_timer: Any = None
        #: Pending dialback verifications (initiating side): id -> Deferred.
        self.pending_verifies: dict[str, list[defer.Deferred]] = {}

    # -- connection ------------------------------------------------------------

    @property
    def peer_address(self) -> str:
        """The peer's address, for logs."""
        return peer_of(self.transport)

    def describe(self) -> str:
        """A one-line description for logs and ``xmppdctl s2s``."""
        direction = "out" if self.initiating else "in"
        remote = self.remote if self.initiating else ",".join(sorted(self.authenticated)) or "?"
        auth = self.auth_method or ("dialback" if self.authenticated else "none")
        return (f"{direction} {self.local or '?'} <-> {remote} "
                f"tls={'yes' if self.tls else 'no'} auth={auth}")

    def connectionMade(self) -> None:
        """Set up the parser; an initiating stream sends its header."""
        self.connected_at = self.reactor.seconds()
        self.manager.stream_opened(self)
        if self.direct_tls:
            self.tls = True
            if not self.initiating:
                # XEP-0368: TLS from the first byte (the initiating side's
                # endpoint wraps the connection itself).
                self.transport.startTLS(self.manager.server_tls_options)
        self._new_parser()
        self._negotiation_timer = self.reactor.callLater(
            self.manager.settings.connect_timeout, self._negotiation_timed_out)
        self._touch()
        if self.initiating:
            self._send_header()

    def connectionLost(self, reason: failure.Failure = protocol.connectionDone) -> None:
        """Cancel timers and tell the manager (which bounces what is still queued)."""
        log.debug("S2S connection with {peer} ({stream}) closed: {reason}",
                  peer=self.peer_address, stream=self.describe(),
                  reason=reason.getErrorMessage())
        self.closing = True
        self.lost = True
        for timer in (self._idle_timer, self._negotiation_timer, self._abort_timer,
                      self._resume_timer):
            if timer is not None and timer.active():
                timer.cancel()
        if self._parser is not None:
            self._parser.close()
        pending, self.pending_verifies = self.pending_verifies, {}
        for waiters in pending.values():
            for d in waiters:
                d.errback(DialbackRefused("remote-server-timeout", "connection lost"))
        try:
            self.manager.stream_closed(self)
        except Exception:
            log.failure("error while forgetting an S2S stream")

    def _negotiation_timed_out(self) -> None:
        if not self.ready:
            self.stream_error("connection-timeout", "negotiation took too long")
            self._abort()

    def _touch(self) -> None:
        """Restart the idle timer (activity in either direction)."""
        timeout = self.manager.settings.idle_timeout
        if not timeout or self.closing:
            return
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.reset(timeout)
        else:
            self._idle_timer = self.reactor.callLater(timeout, self._idle)

    def _idle(self) -> None:
        log.info("closing an idle S2S stream: {stream}", stream=self.describe())
        self.close()

    def _new_parser(self) -> None:
        old = self._parser
        if old is not None:
            old.close()
        limits = self.manager.limits
        self._parser = RestrictedElementStream(
            max_stanza_size=limits.max_stanza_size, max_depth=limits.max_depth,
            max_attributes=limits.max_attributes, max_elements=limits.max_elements)
        self._parser.DocumentStartEvent = self._on_header
        self._parser.ElementEvent = self._on_element
        self._parser.DocumentEndEvent = self._on_end

    def dataReceived(self, data: bytes) -> None:
        """Parse bytes; problems become stream errors."""
        if self.closing or self._parser is None:
            return
        self._touch()
        self.bytes_read += len(data)
        log.debug("s2s {peer} recv: {data}", peer=self.peer_address,
                  data=data.decode(errors="replace"))
        stanzas_before = self.stanzas_in
        try:
            self._parser.parse(data)
        except _StopParsing:
            pass
        except StreamParseError as e:
            self.stream_error(e.condition, e.text)
        except Exception:
            log.failure("unexpected error on an S2S stream")
            self.stream_error("internal-server-error")
        self._throttle(len(data), self.stanzas_in - stanzas_before)

    def _buckets(self) -> list[TokenBucket]:
        return [b for b in (self._read_bucket, self.domain_bucket, self.domain_stanza_bucket)
                if b is not None]

    def _throttle(self, size: int, stanzas: int = 0) -> None:
        """Pause reading while the peer sends faster than ``read_rate`` (or its
        domain's streams together faster than ``domain_read_rate`` bytes or
        ``domain_stanza_rate`` stanzas)."""
        if self.closing:
            return
        delay = max((bucket.consume(size) for bucket in (self._read_bucket, self.domain_bucket)
                     if bucket is not None), default=0.0)
        if stanzas and self.domain_stanza_bucket is not None:
            delay = max(delay, self.domain_stanza_bucket.consume(stanzas))
        if delay > 0 and self._resume_timer is None:
            self.read_pauses += 1
            self.transport.pauseProducing()
            self._resume_timer = self.reactor.callLater(delay, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume_timer = None
        if self.lost:
            return
        delay = max((bucket.wait() for bucket in self._buckets()), default=0.0)
        if delay > 0 and not self.closing:
            self._resume_timer = self.reactor.callLater(delay, self._resume_reading)
            return
        self.transport.resumeProducing()

    def _note_tls(self) -> None:
        """Record the SNI name and the ALPN protocol once the handshake is done."""
        if not self.tls or self.server_name is not None or self.alpn is not None:
            return
        try:
            connection = self.transport.getHandle()
            name = connection.get_servername()
            protocol_name = connection.get_alpn_proto_negotiated()
        except Exception:
            return  # not an OpenSSL connection (tests' fake transports)
        # SNI carries A-labels (ASCII), as stream headers do.
        self.server_name = name.decode("ascii", errors="replace").lower() if name else None
        self.alpn = protocol_name.decode(errors="replace") if protocol_name else None

    def domain_authenticated(self, remote: str) -> None:
        """The stream now speaks for ``remote``: its reads also count against the
        domain's shared bucket."""
        if self.domain_bucket is None:
            self.domain_bucket = self.manager.read_bucket(remote)
        if self.domain_stanza_bucket is None:
            self.domain_stanza_bucket = self.manager.stanza_bucket(remote)

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (_StopParsing, StreamParseError):
            raise
        except Exception:
            log.failure("unexpected error on an S2S stream")
            self.stream_error("internal-server-error")
        if self.closing:
            raise _StopParsing()

    def _on_header(self, root: domish.Element) -> None:
        self._guarded(self._header, root)

    def _on_element(self, element: domish.Element) -> None:
        self._guarded(self._element, element)

    def _on_end(self) -> None:
        self.end_reason = self.end_reason or "peer-closed"
        self.close()
        raise _StopParsing()

    # -- output ----------------------------------------------------------------

    def write(self, text: str) -> None:
        """Write text (nothing after our closing tag)."""
        if self._footer_sent or self.lost:
            return
        self._touch()
        log.debug("s2s {peer} send: {text}", peer=self.peer_address, text=text)
        self.transport.write(text.encode())

    def send_stanza(self, stanza: domish.Element) -> None:
        """Write a stanza in jabber:server."""
        self.stanzas_out += 1
        self.write(stanza_xml(stanza))

    def _send_header(self, stream_id: str | None = None) -> None:
        attrs = {"from": self.local, "to": self.remote, "id": stream_id}
        text = "".join(f" {k}='{escape_attribute(v)}'" for k, v in attrs.items() if v)
        self._header_sent = True
        self.write(f"<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' "
                   f"xmlns:stream='{NS_STREAMS}' xmlns:db='{NS_DIALBACK}' version='1.0'"
                   f"{text}>")

    def close(self) -> None:
        """End the stream cleanly (closing tag, then the connection)."""
        if self.lost:
            return
        self.closing = True
        if self._resume_timer is not None:
            # Read again so that the close (e.g. TLS close_notify) can finish.
            if self._resume_timer.active():
                self._resume_timer.cancel()
            self._resume_timer = None
            self.transport.resumeProducing()
        if not self._footer_sent:
            if not self._header_sent:
                self._send_header(self.sid)
            self.write("</stream:stream>")
            self._footer_sent = True
        self.transport.loseConnection()
        if self._abort_timer is None:
            # A peer that never reads (or never finishes a TLS handshake) keeps a
            # graceful close pending for ever: drop it after a while.
            self._abort_timer = self.reactor.callLater(CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        timer, self._abort_timer = self._abort_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if not self.lost:
            abort = getattr(self.transport, "abortConnection", None)
            if abort is not None:
                abort()

    def stream_error(self, condition: str, text: str | None = None) -> None:
        """Send a stream error and close (once)."""
        if self.closing:
            return
        log.info("S2S stream with {peer} ({stream}): stream error {condition}{text}",
                 peer=self.peer_address, stream=self.describe(), condition=condition,
                 text=f" ({text})" if text else "")
        self.end_reason = condition
        if not self._header_sent:
            self._send_header(self.sid or secrets.token_hex(16))
        body = f"<{condition} xmlns='{NS_STREAM_ERRORS}'/>"
        if text:
            body += (f"<text xmlns='{NS_STREAM_ERRORS}' xml:lang='en'>"
                     f"{escape_attribute(text)}</text>")
        self.write(f"<stream:error>{body}</stream:error>")
        self.close()

    # -- dispatch --------------------------------------------------------------

    def _header(self, root: domish.Element) -> None:
        if root.name != "stream" or root.uri != NS_STREAMS:
            self.stream_error("invalid-namespace")
            return
        if root.defaultUri != NS_SERVER:
            self.stream_error("invalid-namespace", "S2S streams are in jabber:server")
            return
        if self.initiating:
            self._initiating_header(root)
        else:
            self._receiving_header(root)

    def _element(self, element: domish.Element) -> None:
        if element.uri == NS_STREAMS and element.name == "error":
            self._peer_error(element)
            return
        if self.initiating:
            self._initiating_element(element)
        else:
            self._receiving_element(element)

    def _peer_error(self, element: domish.Element) -> None:
        condition = next((c.name for c in element.elements() if c.uri == NS_STREAM_ERRORS
                          and c.name != "text"), "undefined-condition")
        log.info("S2S peer {peer} sent stream error {condition}", peer=self.peer_address,
                 condition=condition)
        self.end_reason = "peer-error:" + condition
        self.close()

    def _start_tls(self, options: Any) -> None:
        self.tls = True
        self.transport.startTLS(options)

    def peer_certificate_problem(self, domain: str) -> str | None:
        """Why the peer's certificate is not valid for ``domain`` (None: it is)."""
        return self.manager.check_certificate(self.transport, domain)

    # -- receiving side -------------------------------------------------------

    def _negotiated(self) -> None:
        if self._negotiation_timer is not None and self._negotiation_timer.active():
            self._negotiation_timer.cancel()
        self.ready = True

    def __repr__(self) -> str:
        return f"<S2SStream {self.describe()}>"

