"""Client-to-server XML streams (RFC 6120): negotiation, then stanzas.

The pieces, from the socket up:

* :class:`C2SStream` — a ``twisted.words`` ``XmlStream`` with a restricted,
  bounded parser (:mod:`xmppd.c2s.xmlparser`). It turns every parse error
  into a stream error the client actually receives, processes one element
  at a time (elements arriving while an asynchronous step runs are queued),
  and never lets an exception escape: unexpected ones are logged and close
  that stream with ``internal-server-error``.
* :class:`C2SAuthenticator` — our ``ListenAuthenticator``: stream header
  checks, stream features, STARTTLS, SASL (:mod:`xmppd.c2s.sasl`), pre-auth
  registration (:mod:`xmppd.c2s.registration`) and resource binding
  (:mod:`xmppd.c2s.bind`).
* the stream is the :class:`~xmppd.sm.session.Connection` under a bound
  :class:`~xmppd.sm.session.Session` (``write_stanza``, ``stream_error``):
  the session manager owns the session; client stanzas enter the server
  through ``Session.receive``.
* :class:`C2SFactory` — the server factory, holding configuration and limits;
  its :class:`~xmppd.c2s.guard.ClientGuard` (shared by every c2s listener of
  a server) holds the limits that span connections: connections per address,
  sessions per account, back-off after failed authentication.

Per-connection limits: the parser's size, depth, attribute and element caps;
a negotiation timeout (authenticate and bind in time, else
``connection-timeout``); once bound, an idle timeout after which the server
sends an XEP-0199 ping and drops a peer that stays silent
(``connection-timeout``); and a token bucket on bytes read that pauses
reading (never drops data) while a client sends faster than its rate.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from twisted.internet import defer
from twisted.protocols.policies import TimeoutMixin
from twisted.python import failure
from twisted.words.protocols.jabber import error, jid, xmlstream
from twisted.words.xish import domish

from xmppd.c2s import bind as bind_mod
from xmppd.c2s import sasl
from xmppd.c2s.guard import ClientGuard
from xmppd.c2s.registration import (
    NS_REGISTER_FEATURE,
    PreAuthRegistration,
    is_register_request,
)
from xmppd.c2s.xmlparser import (
    DEFAULT_MAX_ATTRIBUTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_STANZA_SIZE,
    RestrictedElementStream,
    StreamParseError,
)
from xmppd.logs import logger
from xmppd.ratelimit import TokenBucket
from xmppd.sm.session import Session

NS_CLIENT = "jabber:client"
NS_STREAMS = xmlstream.NS_STREAMS
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_PING = "urn:xmpp:ping"

STANZA_NAMES = ("message", "presence", "iq")
IQ_TYPES = ("get", "set", "result", "error")
# Stanzas built by other parts (S2S, components) may carry these namespaces;
# on a client stream they are written as jabber:client.
FOREIGN_STANZA_NAMESPACES = ("jabber:server", "jabber:component:accept")

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")

log = logger(__name__)


class _StopParsing(Exception):
    """Raised inside parser callbacks to stop parsing a closing stream."""


def _new_stream_id() -> str:
    return secrets.token_hex(16)


def _ignore(*args: object) -> None:
    """Event sink for the parser of a stream that has been restarted."""


class C2SAuthenticator(xmlstream.ListenAuthenticator):
    """Negotiates a client stream: header, features, STARTTLS, SASL, bind."""

    namespace = NS_CLIENT

    def __init__(self, factory: C2SFactory):
        super().__init__()
        self.factory = factory
        self.tls_active = False
        self.username: str | None = None
        self.session: Session | None = None
        self.exchange: Any = None
        self.mechanism: str | None = None
        self.sasl_failures = 0
        self.registration = (
            PreAuthRegistration(factory.accounts) if factory.registration_enabled else None
        )
        self._unbound = False

    # -- stream start ------------------------------------------------------

    def connectionMade(self) -> None:
        """Start TLS at once on a direct-TLS (XEP-0368) port."""
        if self.factory.direct_tls:
            self.xmlstream.transport.startTLS(self.factory.tls_options)
            self.tls_active = True

    def streamStarted(self, rootElement: domish.Element) -> None:
        """Check the client's stream header, answer with ours and the features."""
        xs = self.xmlstream
        lang = rootElement.getAttribute((NS_XML, "lang"))
        xs.lang = lang if lang and _LANGUAGE_TAG.match(lang) else "en"
        xs.peer = None
        sender = rootElement.getAttribute("from")
        if sender:
            try:
                xs.peer = jid.JID(sender).full()
            except (jid.InvalidFormat, UnicodeError, ValueError):
                xs.peer = None

        if rootElement.uri != NS_STREAMS:
            xs.stream_error("invalid-namespace", "the stream namespace must be " + NS_STREAMS)
            return
        if rootElement.name != "stream":
            xs.stream_error("bad-format", "the root element must be <stream:stream/>")
            return
        if rootElement.defaultUri != NS_CLIENT:
            xs.stream_error("invalid-namespace", "the default namespace must be jabber:client")
            return
        if not self._serves(rootElement.getAttribute("to")):
            xs.stream_error("host-unknown", "this server does not serve that host")
            return
        if not self._version_ok(rootElement.getAttribute("version")):
            xs.stream_error("unsupported-version", "XMPP 1.0 is required")
            return
        xs.version = (1, 0)
        xs.sendHeader()
        xs.send(self.features())

    def _serves(self, to: str | None) -> bool:
        if not to:
            return False
        try:
            address = jid.JID(to)
        except (jid.InvalidFormat, UnicodeError, ValueError):
            return False
        return (
            address.user is None
            and address.resource is None
            and (address.host == self.factory.domain)
        )

    @staticmethod
    def _version_ok(version: str | None) -> bool:
        if not version:
            return False
        major, _, minor = version.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            return False
        return int(major) == 1

    def features(self) -> domish.Element:
        """The stream features for the stream's current state."""
        factory = self.factory
        features = domish.Element((NS_STREAMS, "features"))
        if self.username is None:
            if not self.tls_active and factory.tls_options is not None:
                starttls = features.addElement((NS_TLS, "starttls"))
                if factory.require_encryption:
                    starttls.addElement("required")
            if self.tls_active or not factory.require_encryption:
                mechanisms = features.addElement((sasl.NS_SASL, "mechanisms"))
                for name in factory.sasl.offered(self.tls_active):
                    mechanisms.addElement("mechanism", content=name)
                if self.registration is not None:
                    features.addElement((NS_REGISTER_FEATURE, "register"))
        else:
            features.addElement((bind_mod.NS_BIND, "bind"))
            features.addElement((bind_mod.NS_SESSION, "session")).addElement("optional")
        return features

    # -- elements ------------------------------------------------------------

    def handle_element(self, element: domish.Element) -> defer.Deferred | None:
        """Process one top-level element; may return a Deferred (async step)."""
        uri, name = element.uri, element.name
        if uri == NS_CLIENT and name in STANZA_NAMES:
            if self.session is not None:
                if not self.xmlstream.is_ping_reply(element):
                    self.session.receive(element)
                return None
            return self._early_stanza(element)
        if uri == NS_TLS and name == "starttls":
            return self._starttls()
        if uri == sasl.NS_SASL and name in ("auth", "response", "abort"):
            return self._sasl(element)
        if uri == NS_STREAMS and name == "error":
            log.info("client sent a stream error; closing")
            self.xmlstream.close_stream()
            return None
        self.xmlstream.stream_error("unsupported-stanza-type")
        return None

    def _starttls(self) -> None:
        xs = self.xmlstream
        tls_options = self.factory.tls_options
        if self.tls_active or self.username is not None or tls_options is None:
            xs.send(domish.Element((NS_TLS, "failure")))
            xs.close_stream()
            return
        xs.send(domish.Element((NS_TLS, "proceed")))
        xs.transport.startTLS(tls_options)
        self.tls_active = True
        xs.reset()

    # -- SASL ----------------------------------------------------------------

    def _sasl(self, element: domish.Element) -> defer.Deferred | None:
        xs = self.xmlstream
        if self.username is not None:
            xs.stream_error("policy-violation", "already authenticated")
            return None
        if element.name == "abort":
            self.exchange = None
            self._sasl_failed(sasl.SASLFailure("aborted"))
            return None
        if element.name == "auth":
            if self.exchange is not None:
                self.exchange = None
                self._sasl_failed(sasl.SASLFailure("malformed-request", "exchange in progress"))
                return None
            if self.factory.require_encryption and not self.tls_active:
                self._sasl_failed(sasl.SASLFailure("encryption-required"))
                return None
            try:
                self._auth_gate(None)
                mechanism = element.getAttribute("mechanism") or ""
                exchange = self.factory.sasl.start(
                    mechanism, self.tls_active, gate=self._auth_gate
                )
                data = sasl.decode_payload(str(element))
            except sasl.SASLFailure as f:
                self._sasl_failed(f)
                return None
            self.exchange = exchange
            self.mechanism = mechanism
        else:
            if self.exchange is None:
                self._sasl_failed(sasl.SASLFailure("malformed-request", "no exchange to continue"))
                return None
            try:
                data = sasl.decode_payload(str(element))
            except sasl.SASLFailure as f:
                self.exchange = None
                self._sasl_failed(f)
                return None
        exchange = self.exchange
        d = exchange.step(data)
        d.addCallbacks(
            self._sasl_step_done, self._sasl_step_failed, errbackArgs=(exchange,)
        )
        return d

    def _auth_gate(self, username: str | None) -> None:
        """Refuse (temporary-auth-failure) while the account or address backs off."""
        xs = self.xmlstream
        delay = self.factory.guard.auth_delay(username, xs.peer_host)
        if delay > 0:
            log.info(
                "authentication attempt for {username} from {peer} refused: "
                "backing off for {delay:.0f} s",
                username=username or "(not yet known)",
                peer=xs.peer_address,
                delay=delay,
            )
            raise sasl.SASLFailure(
                "temporary-auth-failure",
                f"too many failed attempts; try again in {max(1, round(delay))} s",
            )

    def _sasl_step_done(self, result: sasl.Challenge | sasl.Success) -> None:
        xs = self.xmlstream
        if xs.closing:
            return
        if isinstance(result, sasl.Challenge):
            challenge = domish.Element((sasl.NS_SASL, "challenge"))
            challenge.addContent(sasl.encode_payload(result.data))
            xs.send(challenge)
            return
        self.exchange = None
        self.username = result.username
        self.factory.guard.auth_succeeded(result.username)
        success = domish.Element((sasl.NS_SASL, "success"))
        if result.data is not None:
            success.addContent(sasl.encode_payload(result.data))
        xs.send(success)
        log.info(
            "{username} authenticated with {mechanism} from {peer}",
            username=result.username,
            mechanism=self.mechanism,
            peer=xs.peer_address,
        )
        xs.reset()

    def _sasl_step_failed(self, reason: failure.Failure, exchange: Any) -> None:
        self.exchange = None
        username = getattr(exchange, "username_tried", None)
        if reason.check(sasl.SASLFailure):
            if reason.value.condition == "not-authorized":
                # Wrong credentials: this is what the back-off counts.
                self.factory.guard.auth_failed(username, self.xmlstream.peer_host)
            self._sasl_failed(reason.value, username)
        else:
            log.failure("SASL exchange failed unexpectedly", reason)
            self._sasl_failed(sasl.SASLFailure("temporary-auth-failure"), username)

    def _sasl_failed(self, reason: sasl.SASLFailure, username: str | None = None) -> None:
        xs = self.xmlstream
        if xs.closing:
            return
        self.sasl_failures += 1
        element = domish.Element((sasl.NS_SASL, "failure"))
        element.addElement(reason.condition)
        if reason.text:
            element.addElement("text", content=reason.text)
        xs.send(element)
        log.info(
            "SASL failure ({condition}) for {username} from {peer}",
            condition=reason.condition,
            username=username or "(unknown)",
            peer=xs.peer_address,
        )
        if self.sasl_failures >= self.factory.max_auth_attempts:
            xs.stream_error("policy-violation", "too many failed authentication attempts")

    # -- stanzas before bind -------------------------------------------------

    def _early_stanza(self, stanza: domish.Element) -> defer.Deferred | None:
        xs = self.xmlstream
        factory = self.factory
        if self.username is None:
            if stanza.name == "iq" and is_register_request(stanza):
                if self.registration is None:
                    reply = bind_mod.error_reply(stanza, "service-unavailable")
                    xs.send(reply)
                    return None
                if factory.require_encryption and not self.tls_active:
                    xs.stream_error("not-authorized", "negotiate TLS first")
                    return None
                d = self.registration.handle(stanza)
                d.addCallback(xs.write_stanza)
                return d
            xs.stream_error("not-authorized", "authenticate first")
            return None
        if stanza.name == "iq" and bind_mod.is_bind_request(stanza):
            return self._bind(stanza)
        if (
            stanza.name == "iq"
            and stanza.getAttribute("type") == "set"
            and bind_mod.is_session_request(stanza)
        ):
            xs.send(bind_mod.empty_result(stanza))
            return None
        xs.stream_error("not-authorized", "bind a resource first")
        return None

    def _bind(self, iq: domish.Element) -> defer.Deferred | None:
        try:
            resource = bind_mod.requested_resource(iq)
        except bind_mod.BindError as e:
            self.xmlstream.send(bind_mod.error_reply(iq, e.condition, e.text))
            return None
        xs = self.xmlstream
        guard = self.factory.guard
        if not guard.reserve_session(self.username, xs, resource):
            log.info(
                "{username} has too many sessions: bind refused for {peer}",
                username=self.username,
                peer=xs.peer_address,
            )
            xs.send(
                bind_mod.error_reply(
                    iq, "resource-constraint", "this account has too many sessions"
                )
            )
            return None
        d = defer.maybeDeferred(self.factory.session_manager.bind, xs, self.username, resource)
        d.addCallbacks(self._bound, self._bind_failed, callbackArgs=(iq,), errbackArgs=(iq,))
        return d

    def _bound(self, session: Session, iq: domish.Element) -> None:
        xs = self.xmlstream
        full_jid = session.jid
        self.session = session
        if xs.closing:
            # The stream ended while the session manager was binding: the
            # session is unbound now, or at connectionLost if still open.
            if xs.lost:
                self.unbind()
            return
        self.factory.guard.session_bound(self.username, xs, full_jid.resource)
        xs.send(bind_mod.bind_result(iq, full_jid.full()))
        xs.bound(session)

    def _bind_failed(self, reason: failure.Failure, iq: domish.Element) -> None:
        self.factory.guard.release_session(self.username, self.xmlstream)
        if reason.check(error.StanzaError):
            condition = reason.value.condition
        else:
            log.failure("session manager failed to bind a resource", reason)
            condition = "internal-server-error"
        self.xmlstream.send(bind_mod.error_reply(iq, condition))

    # -- end -----------------------------------------------------------------

    def unbind(self) -> None:
        """Tell the session manager the bound session is gone (once)."""
        if self.session is None or self._unbound:
            return
        self._unbound = True
        try:
            self.factory.session_manager.unbind(self.session)
        except Exception:
            log.failure("session manager failed to unbind {session}", session=self.session)


class C2SStream(xmlstream.XmlStream, TimeoutMixin):
    """One client connection: parsing, limits, error handling, closing."""

    namespace = NS_CLIENT

    def __init__(self, authenticator: C2SAuthenticator, factory: C2SFactory):
        self.factory = factory
        self.closing = False
        self.lost = False
        self.session: Session | None = None
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
        self._read_bucket: TokenBucket | None = None
        if factory.read_rate:
            self._read_bucket = TokenBucket(factory.read_rate, factory.read_burst, factory.reactor)
        super().__init__(authenticator)

    # -- connection ------------------------------------------------------------

    @property
    def peer_address(self) -> str:
        """The client's address, for log messages."""
        try:
            peer = self.transport.getPeer()
            return f"{peer.host}:{peer.port}"
        except Exception:
            return "?"

    def connectionMade(self) -> None:
        """Set up the parser, start the negotiation timer, apply the per-address limit."""
        factory = self.factory
        factory.streams.add(self)
        try:
            self.peer_host = getattr(self.transport.getPeer(), "host", None)
        except Exception:
            self.peer_host = None
        admitted = factory.guard.connection_opened(self.peer_host)
        self._counted = True
        timeout = factory.negotiation_timeout
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
        if self.factory.idle_timeout:
            self.setTimeout(self.factory.idle_timeout)
        self.dispatch(self, xmlstream.STREAM_AUTHD_EVENT)

    # -- idle detection (XEP-0199) -------------------------------------------

    def callLater(self, period: float, func: Any) -> Any:
        """TimeoutMixin's scheduler: the factory's reactor (a fake clock in tests)."""
        return self.factory.reactor.callLater(period, func)

    def timeoutConnection(self) -> None:
        """Idle too long: ping once; no answer within ``ping_timeout``: drop."""
        if self.closing:
            return
        ping_timeout = self.factory.ping_timeout
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
            self.setTimeout(self.factory.idle_timeout or None)
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
            old.DocumentStartEvent = old.ElementEvent = old.DocumentEndEvent = _ignore
        self._queue = []
        factory = self.factory
        self.stream = RestrictedElementStream(
            max_stanza_size=factory.max_stanza_size,
            max_depth=factory.max_depth,
            max_attributes=factory.max_attributes,
            max_elements=factory.max_elements,
        )
        self.stream.DocumentStartEvent = self.onDocumentStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = self.onDocumentEnd

    def dataReceived(self, data: bytes) -> None:
        """Parse bytes; any problem becomes a stream error sent to the client."""
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
        """Write to the client; nothing goes out after our closing tag."""
        if self._footer_sent:
            return
        super().send(obj)

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
        """Serialise a stanza for this client (without modifying it)."""
        if self.closing:
            return
        default = element.defaultUri
        if default not in FOREIGN_STANZA_NAMESPACES:
            default = self.namespace
        self.send(
            element.toXml(
                prefixes=self.prefixes,
                defaultUri=default,
                prefixesInScope=list(self.prefixes.values()),
            )
        )

    def stream_error(self, condition: str, text: str | None = None) -> None:
        """Send a stream error and close (no-op if already closing)."""
        if self.closing:
            return
        self.closing = True
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


class C2SFactory(xmlstream.XmlStreamServerFactory):
    """Server factory for client streams.

    ``router`` defaults to ``session_manager.router``. Limits:
    ``max_stanza_size`` (bytes of one stanza), ``max_depth`` (element
    nesting), ``max_attributes`` (attributes of one element),
    ``max_elements`` (elements in one stanza), ``max_auth_attempts`` (failed
    SASL attempts before the stream is closed with ``policy-violation``),
    ``max_pending`` (stanzas queued behind an unfinished asynchronous step),
    ``negotiation_timeout`` (seconds to authenticate and get a resource
    bound), ``idle_timeout`` (seconds of silence from a bound client before
    it is pinged), ``ping_timeout`` (seconds it then has to answer),
    ``read_rate``/``read_burst`` (bytes a second / bytes at once a client may
    send before reading pauses), ``close_timeout`` (seconds a closing stream
    may linger); 0 turns a timeout or the read limit off. ``guard`` holds the
    limits shared across listeners (a fresh one without connection or session
    limits by default). ``allow_plain_without_tls`` offers PLAIN before TLS
    when encryption is not required (else PLAIN there gets
    ``mechanism-too-weak``).
    """

    protocol = C2SStream
    noisy = False

    def __init__(
        self,
        *,
        domain: str,
        session_manager: Any,
        accounts: Any,
        portal: Any,
        tls_options: Any,
        require_encryption: bool,
        direct_tls: bool = False,
        registration_enabled: bool = False,
        reactor: Any = None,
        router: Any = None,
        allow_plain_without_tls: bool = True,
        max_stanza_size: int = DEFAULT_MAX_STANZA_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        max_auth_attempts: int = 5,
        max_pending: int = 32,
        negotiation_timeout: float = 30.0,
        idle_timeout: float = 300.0,
        ping_timeout: float = 60.0,
        read_rate: float = 65536,
        read_burst: float = 262144,
        close_timeout: float = 10.0,
        guard: ClientGuard | None = None,
    ):
        super().__init__(lambda: C2SAuthenticator(self))
        if direct_tls and tls_options is None:
            raise ValueError("direct TLS needs tls_options")
        if reactor is None:
            from twisted.internet import reactor
        self.domain = jid.JID(domain).host
        self.session_manager = session_manager
        self.accounts = accounts
        self.portal = portal
        self.tls_options = tls_options
        self.require_encryption = require_encryption
        self.direct_tls = direct_tls
        self.registration_enabled = registration_enabled
        self.reactor = reactor
        self._router = router
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.max_attributes = max_attributes
        self.max_elements = max_elements
        self.max_auth_attempts = max_auth_attempts
        self.max_pending = max_pending
        self.negotiation_timeout = negotiation_timeout
        self.idle_timeout = idle_timeout
        self.ping_timeout = ping_timeout
        self.read_rate = read_rate
        self.read_burst = read_burst
        self.close_timeout = close_timeout
        self.guard = guard if guard is not None else ClientGuard(reactor)
        if read_rate and read_burst <= 0:
            raise ValueError("read_burst must be positive when read_rate is set")
        self.sasl = sasl.SASLServer(
            accounts=accounts,
            portal=portal,
            domain=self.domain,
            allow_plain_without_tls=allow_plain_without_tls,
        )
        self.streams: set[C2SStream] = set()
        #: How often reading was paused by the read-rate limit (all streams).
        self.read_pauses = 0

    @property
    def router(self) -> Any:
        """Where stanzas from bound clients go."""
        if self._router is not None:
            return self._router
        return self.session_manager.router

    def buildProtocol(self, addr: Any) -> C2SStream:
        """A new client stream with its own authenticator."""
        xs = self.protocol(self.authenticatorFactory(), self)
        self.installBootstraps(xs)
        return xs

    def close_all(self, condition: str = "system-shutdown", text: str | None = None) -> None:
        """Close every open client stream with a stream error."""
        for xs in list(self.streams):
            xs.stream_error(condition, text)
