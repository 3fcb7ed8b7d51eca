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

Initiating (we connect): see :mod:`xmppd.s2s.initiating`. The namespaces
and the stanza text for the wire are in :mod:`xmppd.s2s.wire`.
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.python import failure
from twisted.words.xish import domish

from xmppd.addresses import normalised_domain, parse_jid
from xmppd.c2s.xmlparser import RestrictedElementStream, StreamParseError
from xmppd.logs import logger, peer_of
from xmppd.ratelimit import TokenBucket
from xmppd.s2s.dialback import NS_DIALBACK, NS_DIALBACK_FEATURE, DialbackRefused, key_is_valid
from xmppd.s2s.initiating import InitiatingSide
from xmppd.s2s.wire import (
    NS_SASL,
    NS_SERVER,
    NS_STANZAS,
    NS_STREAM_ERRORS,
    NS_STREAMS,
    NS_TLS,
    STANZA_NAMES,
    as_client_stanza,
    dialback_xml,
    stanza_xml,
)
from xmppd.stanza import escape_attribute

if TYPE_CHECKING:
    from xmppd.s2s.manager import S2SManager


#: Seconds a closing stream's peer has to close its side before the connection is dropped.
CLOSE_GRACE = 10.0

log = logger(__name__)


class _StopParsing(Exception):
    """Raised inside parser callbacks once the stream is closing."""


class S2SStream(InitiatingSide, protocol.Protocol):
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

    def _receiving_header(self, root: domish.Element) -> None:
        self._note_tls()
        self.sid = secrets.token_hex(16)
        to = root.getAttribute("to")
        local = normalised_domain(to) if to else None
        sender = root.getAttribute("from")
        remote = normalised_domain(sender) if sender else None
        if local is None or local not in self.manager.served:
            self.stream_error("host-unknown")
            return
        if self.server_name is not None and self.server_name != local:
            log.info("S2S {peer}: TLS asked for {sni}, the stream for {local}",
                     peer=self.peer_address, sni=self.server_name, local=local)
        if self.local is not None and local != self.local:
            self.stream_error("host-unknown", "the domain changed on a stream restart")
            return
        self.local = local
        if sender is not None and (remote is None or parse_jid(sender).user is not None):
            self.stream_error("invalid-from", "not a server's domain")
            return
        if remote in self.manager.served:
            self.stream_error("invalid-from", f"{remote} is served here")
            return
        self.remote = remote
        self._send_header_receiving()
        if root.getAttribute("version") is None:
            # XEP-0220's pre-RFC-6120 servers: no features, dialback directly.
            if self.manager.requires_tls(remote) and not self.tls:
                self.stream_error("policy-violation", "TLS is required (version='1.0' streams)")
            return
        self.write(self._features())

    def _send_header_receiving(self) -> None:
        # Swap for the header: we are 'from', they are 'to'.
        attrs = {"from": self.local, "to": self.remote, "id": self.sid}
        text = "".join(f" {k}='{escape_attribute(v)}'" for k, v in attrs.items() if v)
        self._header_sent = True
        self.write(f"<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' "
                   f"xmlns:stream='{NS_STREAMS}' xmlns:db='{NS_DIALBACK}' version='1.0'"
                   f"{text}>")

    def _features(self) -> str:
        remote = self.remote
        parts = []
        if self.authenticated and self.sasl_done:
            return "<stream:features/>"
        if not self.tls and self.manager.can_tls:
            required = "<required/>" if self.manager.requires_tls(remote) else ""
            parts.append(f"<starttls xmlns='{NS_TLS}'>{required}</starttls>")
            if required:
                return "<stream:features>" + "".join(parts) + "</stream:features>"
        if self.tls and self.cert_valid is None and remote is not None:
            problem = self.peer_certificate_problem(remote)
            self.cert_valid = problem is None
            if problem:
                log.debug("S2S {remote}: no SASL EXTERNAL: {problem}", remote=remote,
                          problem=problem)
        if self.tls and self.cert_valid:
            parts.append(f"<mechanisms xmlns='{NS_SASL}'><mechanism>EXTERNAL</mechanism>"
                         "</mechanisms>")
        if self.manager.dialback_allowed(remote):
            parts.append(f"<dialback xmlns='{NS_DIALBACK_FEATURE}'><errors/></dialback>")
        return "<stream:features>" + "".join(parts) + "</stream:features>"

    def _receiving_element(self, element: domish.Element) -> None:
        uri, name = element.uri, element.name
        if uri == NS_TLS and name == "starttls":
            if self.tls or not self.manager.can_tls:
                self.write(f"<failure xmlns='{NS_TLS}'/>")
                self.close()
                return
            self.write(f"<proceed xmlns='{NS_TLS}'/>")
            self._new_parser()
            self._start_tls(self.manager.server_tls_options)
            return
        if uri == NS_SASL and name == "auth":
            self._sasl_external(element)
            return
        if uri == NS_DIALBACK and name == "result":
            self._dialback_result(element)
            return
        if uri == NS_DIALBACK and name == "verify":
            self._dialback_verify(element)
            return
        if uri == NS_SERVER and name in STANZA_NAMES:
            self._stanza(element)
            return
        self.stream_error("unsupported-stanza-type", f"<{name}> is not expected here")

    def _sasl_external(self, element: domish.Element) -> None:
        mechanism = element.getAttribute("mechanism")
        remote = self.remote
        if mechanism != "EXTERNAL" or not self.tls or not self.cert_valid or self.sasl_done:
            self.write(f"<failure xmlns='{NS_SASL}'><invalid-mechanism/></failure>")
            return
        text = str(element).strip()
        if text and text != "=":
            try:
                authzid = base64.b64decode(text, validate=True).decode()
            except Exception:
                self.write(f"<failure xmlns='{NS_SASL}'><incorrect-encoding/></failure>")
                return
            if normalised_domain(authzid) != remote:
                self.write(f"<failure xmlns='{NS_SASL}'><invalid-authzid/></failure>")
                return
        if self._over_domain_limit(remote):
            return
        self.sasl_done = True
        self.authenticated.add(remote)
        self.domain_authenticated(remote)
        self.auth_method = "EXTERNAL"
        self._negotiated()
        log.info("S2S: {remote} authenticated by certificate (SASL EXTERNAL)", remote=remote)
        self.write(f"<success xmlns='{NS_SASL}'/>")
        self._new_parser()  # the peer restarts the stream

    def _dialback_result(self, element: domish.Element) -> None:
        sender, to = element.getAttribute("from"), element.getAttribute("to")
        remote = normalised_domain(sender) if sender else None
        local = normalised_domain(to) if to else None
        if remote is None or remote in self.manager.served:
            self.stream_error("invalid-from")
            return
        if local is None or local not in self.manager.served:
            self.stream_error("host-unknown")
            return
        if self.manager.requires_tls(remote) and not self.tls:
            self.stream_error("policy-violation", "STARTTLS is required before dialback")
            return
        key = str(element).strip()
        reply = {"from": local, "to": remote}
        if not self.manager.dialback_allowed(remote) or not key:
            self.write(dialback_xml("result", {**reply, "type": "error"}) [:-2]
                       + f"><error type='cancel'><not-authorized xmlns='{NS_STANZAS}'/>"
                       "</error></db:result>")
            return
        if remote not in self.authenticated and self._over_domain_limit(remote):
            return
        d = self.manager.verify_dialback(local, remote, self.sid, key)

        def answered(valid: bool) -> None:
            if self.closing:
                return
            if valid:
                if remote not in self.authenticated and self._over_domain_limit(remote):
                    return
                self.authenticated.add(remote)
                self.domain_authenticated(remote)
                self._negotiated()
                log.info("S2S: {remote} authenticated by dialback", remote=remote)
                self.write(dialback_xml("result", {**reply, "type": "valid"}))
            else:
                log.warn("S2S: {remote} sent a dialback key its server did not confirm",
                         remote=remote)
                self.write(dialback_xml("result", {**reply, "type": "invalid"}))
                self.stream_error("not-authorized", "dialback key not confirmed")

        def failed(reason: failure.Failure) -> None:
            if self.closing:
                return
            condition = getattr(reason.value, "condition", "remote-server-timeout")
            self.write(dialback_xml("result", {**reply, "type": "error"})[:-2]
                       + f"><error type='cancel'><{condition} xmlns='{NS_STANZAS}'/>"
                       "</error></db:result>")

        d.addCallbacks(answered, failed)
        d.addErrback(lambda f: log.failure("dialback verification", f))

    def _dialback_verify(self, element: domish.Element) -> None:
        # We are the authoritative server: is this key ours?
        sender, to = element.getAttribute("from"), element.getAttribute("to")
        stream_id = element.getAttribute("id") or ""
        receiving = normalised_domain(sender) if sender else None
        originating = normalised_domain(to) if to else None
        if receiving is None:
            self.stream_error("invalid-from")
            return
        if originating is None or originating not in self.manager.served:
            self.stream_error("host-unknown")
            return
        valid = key_is_valid(self.manager.secret, receiving, originating, stream_id,
                             str(element))
        self.write(dialback_xml("verify", {"from": originating, "to": receiving,
                                           "id": stream_id,
                                           "type": "valid" if valid else "invalid"}))

    def _stanza(self, element: domish.Element) -> None:
        if not self.authenticated:
            self.stream_error("not-authorized", "authenticate first")
            return
        sender, to = element.getAttribute("from"), element.getAttribute("to")
        sender_jid = parse_jid(sender) if sender else None
        to_jid = parse_jid(to) if to else None
        if sender_jid is None or to_jid is None:
            self.stream_error("improper-addressing", "stanzas need valid 'from' and 'to'")
            return
        if sender_jid.host not in self.authenticated:
            self.stream_error("invalid-from", f"{sender_jid.host} is not authenticated here")
            return
        if to_jid.host not in self.manager.served:
            self.stream_error("host-unknown", f"{to_jid.host} is not served here")
            return
        as_client_stanza(element)
        self.stanzas_in += 1
        self.manager.incoming_stanza(self, element)

    def _over_domain_limit(self, remote: str) -> bool:
        """Refuse (stream error ``conflict``, RFC 6120 4.9.3.3) one more stream for a
        domain that has ``max_incoming_per_domain`` already."""
        if not self.manager.incoming_limit_reached(self, remote):
            return False
        log.warn("S2S: refusing another stream for {remote}: max_incoming_per_domain "
                 "reached", remote=remote)
        self.stream_error("conflict", f"too many connections for {remote}")
        return True

    def _negotiated(self) -> None:
        if self._negotiation_timer is not None and self._negotiation_timer.active():
            self._negotiation_timer.cancel()
        self.ready = True

    def __repr__(self) -> str:
        return f"<S2SStream {self.describe()}>"

