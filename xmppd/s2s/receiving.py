"""The receiving side of an S2S stream: another server connected to us.

The header's ``to`` must be a domain we serve (``host-unknown``), ``from`` a
valid domain (``invalid-from``); the features offer STARTTLS, then SASL
EXTERNAL when the peer's certificate verifies for its domain and Server
Dialback (XEP-0220) when allowed for it; ``db:result`` asks the manager to
verify the key with the originating domain's authoritative server,
``db:verify`` is answered from our own secret; stanzas are accepted only from
domains this stream authenticated, to domains we serve, with valid addresses.
A remote domain may hold ``max_incoming_per_domain`` authenticated streams.
:class:`ReceivingSide` is a part of :class:`~xmppd.s2s.stream.S2SStream`.
"""

from __future__ import annotations

import base64
import secrets

from twisted.python import failure
from twisted.words.xish import domish

from xmppd.addresses import normalised_domain, parse_jid
from xmppd.logs import logger
from xmppd.s2s.dialback import NS_DIALBACK, NS_DIALBACK_FEATURE, key_is_valid
from xmppd.s2s.wire import (
    NS_SASL,
    NS_SERVER,
    NS_STANZAS,
    NS_TLS,
    STANZA_NAMES,
    as_client_stanza,
    dialback_xml,
)

log = logger(__name__)


class ReceivingSide:
    """The methods of an S2S stream another server opened (mixed into S2SStream)."""

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
        # Our answer: we are 'from', they are 'to', with the stream id we chose.
        self._send_header(self.sid)

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
