"""Negotiating a client stream (RFC 6120): header, features, STARTTLS, SASL, bind.

:class:`C2SAuthenticator` is our Twisted ``ListenAuthenticator``: it checks
the client's stream header, offers the features for the stream's state,
runs STARTTLS, SASL (:mod:`xmppd.c2s.sasl`) in both framings (RFC 6120's
and SASL2, XEP-0388, :mod:`xmppd.c2s.sasl2`: one exchange, two sets of
elements), pre-authentication registration (:mod:`xmppd.c2s.registration`)
and resource binding (:mod:`xmppd.c2s.bind`, and Bind 2 inside SASL2,
XEP-0386). What a client inlines in SASL2 or Bind 2 besides binding
(XEP-0198 resumption and enabling, carbons, CSI, FAST tokens) is handled by
the modules' inline handlers (:func:`xmppd.module.inline_handler`). Once a
resource is bound, the client's stanzas go to the
:class:`~xmppd.sm.session.Session` the session manager made, through
``Session.receive``. Stream errors go through the stream's one
``stream_error``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish

from xmppd.addresses import parse_jid
from xmppd.c2s import bind as bind_mod
from xmppd.c2s import sasl, sasl2
from xmppd.c2s.bind2 import SASL2Success
from xmppd.c2s.channel_binding import NS_SASL_CB, channel_bindings
from xmppd.c2s.registration import (
    NS_REGISTER_FEATURE,
    PreAuthRegistration,
    is_register_request,
)
from xmppd.errors import StanzaError, error_reply
from xmppd.logs import logger
from xmppd.sm.session import Session
from xmppd.sm.stanzas import result_for

if TYPE_CHECKING:
    from xmppd.c2s.factory import C2SFactory

NS_CLIENT = "jabber:client"
NS_STREAMS = xmlstream.NS_STREAMS
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_XML = "http://www.w3.org/XML/1998/namespace"
STANZA_NAMES = ("message", "presence", "iq")

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")

log = logger(__name__)


class C2SAuthenticator(SASL2Success, xmlstream.ListenAuthenticator):
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
        self._bindings: dict[str, bytes] | None = None
        #: The framing of the exchange in progress (or last): "legacy" or "sasl2".
        self.framing = "legacy"
        #: The SASL2 ``<authenticate/>`` being (or last) processed.
        self.sasl2: sasl2.Authenticate | None = None

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
            parsed = parse_jid(sender)  # cached: three stream headers per login
            xs.peer = parsed.full() if parsed is not None else None

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
        xs.send(self.features_text())

    def _serves(self, to: str | None) -> bool:
        address = parse_jid(to)
        if address is None:
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

    def features_text(self) -> str:
        """:meth:`features` as text, built once for every stream in the same state."""
        xs = self.xmlstream
        state = (type(xs), self.tls_active, tuple(self.channel_bindings()),
                 self.registration is not None, self.username is None, self.session is None)
        return self.factory.features_text(state, self.features, xs.element_text)

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
                bindings = self.channel_bindings()
                offered = factory.sasl.offered(self.tls_active, bindings)
                mechanisms = features.addElement((sasl.NS_SASL, "mechanisms"))
                for name in offered:
                    mechanisms.addElement("mechanism", content=name)
                modules = self._modules()
                features.addChild(sasl2.offer(
                    offered,
                    modules.sasl2_features(self) if modules is not None else [],
                    modules.bind2_features() if modules is not None else [],
                ))
                if bindings:  # XEP-0440
                    offer = features.addElement((NS_SASL_CB, "sasl-channel-binding"))
                    for cb_type in bindings:
                        offer.addElement("channel-binding")["type"] = cb_type
                if self.registration is not None:
                    features.addElement((NS_REGISTER_FEATURE, "register"))
        else:
            if self.session is None:
                features.addElement((bind_mod.NS_BIND, "bind"))
                features.addElement((bind_mod.NS_SESSION, "session")).addElement("optional")
            for uri, name in factory.session_manager.stream_features():
                features.addElement((uri, name))
        return features

    # -- elements ------------------------------------------------------------

    def handle_element(self, element: domish.Element) -> defer.Deferred | None:
        """Process one top-level element; may return a Deferred (async step)."""
        uri, name = element.uri, element.name
        if uri == NS_CLIENT and name in STANZA_NAMES:
            if self.session is not None:
                if not self.xmlstream.is_ping_reply(element):
                    self.session.receive(element)
                else:
                    self.session.handled += 1
                return None
            return self._early_stanza(element)
        if uri == NS_TLS and name == "starttls":
            return self._starttls()
        if uri == sasl.NS_SASL and name in ("auth", "response", "abort"):
            return self._sasl(element)
        if uri == sasl2.NS_SASL2 and name in ("authenticate", "response", "abort"):
            return self._sasl(element)
        if uri == NS_STREAMS and name == "error":
            log.info("client sent a stream error; closing")
            self.xmlstream.close_stream()
            return None
        if self.session is not None:
            handler = self.factory.session_manager.nonza_handler(uri, name)
            if handler is not None:
                handler(self.session, element)
                return None
        elif self.username is not None:
            handler = self.factory.session_manager.nonza_handler(uri, name, True)
            if handler is not None:
                handler(self, element)
                return None
        self.xmlstream.stream_error("unsupported-stanza-type")
        return None

    def _modules(self) -> Any:
        """The session manager's module host (None for a session manager without modules)."""
        return getattr(self.factory.session_manager, "modules", None)

    def channel_bindings(self) -> dict[str, bytes]:
        """The TLS connection's channel binding data (type -> bytes); empty without TLS."""
        if not self.tls_active:
            return {}
        if self._bindings is None:
            try:
                tls = self.xmlstream.transport.getHandle()
            except Exception:  # noqa: BLE001 - a transport without a TLS handle
                tls = None
            self._bindings = channel_bindings(tls) if tls is not None else {}
        return self._bindings

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
        """One SASL element of either framing: the exchange is the same for both."""
        xs = self.xmlstream
        if self.username is not None:
            xs.stream_error("policy-violation", "already authenticated")
            return None
        framing = "sasl2" if element.uri == sasl2.NS_SASL2 else "legacy"
        if element.name == "abort":
            self.exchange = None
            self.framing = framing
            self._sasl_failed(sasl.SASLFailure("aborted"))
            return None
        if element.name in ("auth", "authenticate"):
            if self.exchange is not None:
                self.exchange = None
                self._sasl_failed(sasl.SASLFailure("malformed-request", "exchange in progress"))
                return None
            self.framing = framing
            self.sasl2 = None
            if self.factory.require_encryption and not self.tls_active:
                self._sasl_failed(sasl.SASLFailure("encryption-required"))
                return None
            try:
                self._auth_gate(None)
                if framing == "sasl2":
                    request = sasl2.parse_authenticate(element)
                    mechanism = request.mechanism
                    self.sasl2 = request
                    exchange = self._start_exchange(mechanism)
                    request.exchange = exchange
                    data = request.initial
                else:
                    mechanism = element.getAttribute("mechanism") or ""
                    exchange = self._start_exchange(mechanism)
                    data = sasl.decode_payload(str(element))
            except sasl.SASLFailure as f:
                self._sasl_failed(f)
                return None
            self.exchange = exchange
            self.mechanism = mechanism
        else:
            if self.exchange is None or framing != self.framing:
                self.exchange = None
                self.framing = framing
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

    def _start_exchange(self, mechanism: str) -> Any:
        """A new exchange: a module's SASL2-only mechanism (FAST) or one of SASLServer's."""
        if self.framing == "sasl2":
            modules = self._modules()
            if modules is not None:
                exchange = modules.sasl2_exchange(self, mechanism, self._auth_gate)
                if exchange is not None:
                    return exchange
        return self.factory.sasl.start(
            mechanism, self.tls_active, gate=self._auth_gate, bindings=self.channel_bindings(),
        )

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

    def _sasl_step_done(self, result: sasl.Challenge | sasl.Success) -> defer.Deferred | None:
        xs = self.xmlstream
        if xs.closing:
            return None
        if isinstance(result, sasl.Challenge):
            if self.framing == "sasl2":
                xs.send(sasl2.challenge(result.data))
                return None
            challenge = domish.Element((sasl.NS_SASL, "challenge"))
            challenge.addContent(sasl.encode_payload(result.data))
            xs.send(challenge)
            return None
        if self.framing == "sasl2":
            return self._sasl2_success(result)
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
        return None

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
        if self.framing == "sasl2":
            xs.send(sasl2.failure(reason))
        else:
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
        if self.sasl_failures >= self.factory.limits.max_auth_attempts:
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
            xs.send(result_for(stanza))
            return None
        xs.stream_error("not-authorized", "bind a resource first")
        return None

    def _bind(self, iq: domish.Element) -> defer.Deferred | None:
        try:
            resource = bind_mod.requested_resource(iq)
        except StanzaError as e:
            self.xmlstream.send(error_reply(iq, e))
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

    def resume(self, session: Session) -> bool:
        """Put this authenticated stream under an existing session (XEP-0198 resumption).

        False when the account has no session slot left for it.
        """
        xs = self.xmlstream
        if not self.factory.guard.reserve_session(self.username, xs, session.resource):
            return False
        self.factory.guard.session_bound(self.username, xs, session.resource)
        self.session = session
        session.attach(xs)
        xs.bound(session)
        return True

    def unbind(self) -> None:
        """Tell the session manager the bound session is gone (once)."""
        if self.session is None or self._unbound:
            return
        self._unbound = True
        if self.session.connection is not self.xmlstream:
            return  # resumed on another connection meanwhile
        try:
            self.factory.session_manager.unbind(
                self.session, interrupted=self.xmlstream.interrupted)
        except Exception:
            log.failure("session manager failed to unbind {session}", session=self.session)
