"""The initiating side of an S2S stream: we connect to another server.

Header, STARTTLS, then SASL EXTERNAL if the peer offers it (our certificate
is good for our domain there), else Server Dialback with a key from our
secret (XEP-0220, XEP-0185). The manager learns when the stream is
authenticated (or why it failed) and may send ``db:verify`` requests on it as
soon as it is encrypted. :class:`InitiatingSide` is a part of
:class:`~xmppd.s2s.stream.S2SStream`.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet import defer
from twisted.words.xish import domish

from xmppd.addresses import normalised_domain
from xmppd.logs import logger
from xmppd.s2s.certificates import ClientTLSCreator
from xmppd.s2s.dialback import NS_DIALBACK, NS_DIALBACK_FEATURE, DialbackRefused, dialback_key
from xmppd.s2s.wire import NS_SASL, NS_TLS, dialback_xml
from xmppd.stanza import NS_STREAMS

log = logger(__name__)


class InitiatingSide:
    """The methods of an S2S stream that we opened (mixed into S2SStream)."""

    manager: Any
    local: Any
    remote: Any
    sid: Any
    tls: bool
    sasl_done: bool
    auth_method: Any
    closing: bool
    end_reason: Any
    pending_verifies: dict
    _note_tls: Any
    domain_authenticated: Any

    # -- initiating side -------------------------------------------------------

    def _initiating_header(self, root: domish.Element) -> None:
        self._note_tls()
        self.sid = root.getAttribute("id")
        if not self.sid:
            self.stream_error("invalid-id", "the receiving server must give a stream id")
            return
        sender = root.getAttribute("from")
        if sender and normalised_domain(sender) != self.remote:
            self.stream_error("invalid-from", "the header names another domain")
            return
        if root.getAttribute("version") is None:
            # No features will come (pre-RFC 6120 server): dialback straight away.
            if self.manager.requires_tls(self.remote):
                self.fail("remote-server-timeout", "the remote server does not do TLS")
                return
            self._start_dialback()

    def _initiating_element(self, element: domish.Element) -> None:
        uri, name = element.uri, element.name
        if uri == NS_STREAMS and name == "features":
            self._features_received(element)
        elif uri == NS_TLS and name == "proceed":
            self._new_parser()
            self._start_tls(ClientTLSCreator(self.manager.client_tls_options, self.remote))
            self._send_header()
        elif uri == NS_TLS and name == "failure":
            self.fail("remote-server-timeout", "STARTTLS failed")
        elif uri == NS_SASL and name == "success":
            self.sasl_done = True
            self.auth_method = "EXTERNAL"
            self._new_parser()
            self._send_header()
        elif uri == NS_SASL and name == "failure":
            if self._dialback_offered and self.manager.dialback_allowed(self.remote):
                self._start_dialback()
            else:
                self.fail("remote-server-timeout", "SASL EXTERNAL failed")
        elif uri == NS_DIALBACK and name == "result":
            self._dialback_outcome(element)
        elif uri == NS_DIALBACK and name == "verify":
            self._verify_outcome(element)
        else:
            self.stream_error("unsupported-stanza-type", f"<{name}> is not expected here")

    _dialback_offered = False

    def _features_received(self, features: domish.Element) -> None:
        def child(ns: str, name: str) -> domish.Element | None:
            return next((c for c in features.elements() if c.uri == ns and c.name == name), None)

        if self.sasl_done:
            self._authenticated("EXTERNAL")
            return
        if child(NS_TLS, "starttls") is not None and not self.tls and self.manager.can_tls:
            self.write(f"<starttls xmlns='{NS_TLS}'/>")
            return
        if not self.tls and self.manager.requires_tls(self.remote):
            self.fail("remote-server-timeout", "the remote server does not offer TLS")
            return
        if self.tls and self.remote in self.manager.settings.trusted_domains:
            problem = self.peer_certificate_problem(self.remote)
            if problem:
                self.fail("remote-server-timeout", problem)
                return
        self._verify_ready = True
        self.manager.stream_can_verify(self)
        self._dialback_offered = child(NS_DIALBACK_FEATURE, "dialback") is not None
        mechanisms = child(NS_SASL, "mechanisms")
        offered = [str(m).strip() for m in mechanisms.elements() if m.name == "mechanism"] \
            if mechanisms is not None else []
        if "EXTERNAL" in offered and not self._external_tried:
            self._external_tried = True
            authzid = base64.b64encode(self.local.encode()).decode()
            self.write(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{authzid}</auth>")
            return
        if self.manager.dialback_allowed(self.remote):
            self._start_dialback()
            return
        self.fail("remote-server-timeout", "no authentication method in common")

    @property
    def can_verify(self) -> bool:
        """Whether db:verify requests may go out on this (initiating) stream now."""
        return self._verify_ready and not self.closing

    def _start_dialback(self) -> None:
        if self._dialback_sent:
            return
        self._dialback_sent = True
        self._verify_ready = True
        key = dialback_key(self.manager.secret, self.remote, self.local, self.sid)
        self.write(dialback_xml("result", {"from": self.local, "to": self.remote}, key))

    def _dialback_outcome(self, element: domish.Element) -> None:
        kind = element.getAttribute("type")
        if kind == "valid":
            self._authenticated("dialback")
        elif kind == "invalid":
            self.fail("remote-server-timeout", "the remote server refused our dialback key")
        else:
            self.fail("remote-server-timeout", "dialback error")

    def _authenticated(self, method: str) -> None:
        self.auth_method = method
        self.domain_authenticated(self.remote)
        self._negotiated()
        log.info("S2S: {local} -> {remote} authenticated ({method})", local=self.local,
                 remote=self.remote, method=method)
        self.manager.outgoing_ready(self)

    def verify(self, stream_id: str, key: str) -> defer.Deferred:
        """Ask the peer (authoritative for ``remote``) whether a key is valid."""
        d: defer.Deferred = defer.Deferred()
        self.pending_verifies.setdefault(stream_id, []).append(d)
        self.write(dialback_xml("verify", {"from": self.local, "to": self.remote,
                                           "id": stream_id}, key))
        return d

    def _verify_outcome(self, element: domish.Element) -> None:
        stream_id = element.getAttribute("id") or ""
        waiters = self.pending_verifies.get(stream_id)
        if not waiters:
            return  # not ours (or answered already): ignore
        d = waiters.pop(0)
        if not waiters:
            del self.pending_verifies[stream_id]
        kind = element.getAttribute("type")
        if kind in ("valid", "invalid"):
            d.callback(kind == "valid")
        else:
            d.errback(DialbackRefused("remote-server-timeout", "verification error"))

    def fail(self, condition: str, why: str) -> None:
        """Give up on an initiating stream: the manager bounces with ``condition``."""
        log.info("S2S {local} -> {remote}: {why}", local=self.local, remote=self.remote, why=why)
        self.end_reason = condition
        self.manager.outgoing_failed(self, condition, why)
        self.close()
