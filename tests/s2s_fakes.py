"""Fakes for the S2S unit tests: a manager without sockets, TLS-capable transports, certificates."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from xmppd.sections import LimitSettings, S2SSettings

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


class TLSStringTransport(StringTransport):
    """A StringTransport that records STARTTLS (no real TLS)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tls_started: Any = None

    def startTLS(self, options: Any) -> None:
        """Note the options; the bytes stay readable."""
        self.tls_started = options

    def take(self) -> str:
        """What was written since the last take."""
        text = self.value().decode()
        self.clear()
        return text


class FakeRouter:
    """Collects routed stanzas."""

    def __init__(self) -> None:
        self.routed: list[domish.Element] = []

    def route(self, stanza: domish.Element) -> None:
        """Keep it."""
        self.routed.append(stanza)


class FakeManager:
    """What a stream needs from the S2S manager, recording what streams report."""

    def __init__(self, served=("b.example", "conference.b.example"), **settings: Any):
        self.settings = S2SSettings(**settings)
        self.limits = LimitSettings()
        self.reactor = Clock()
        self.served = frozenset(served)
        self.secret = "s3cret"
        self.server_tls_options = object()
        self.client_tls_options = object()
        self.can_tls = True
        self.certificate_problems: dict[str, str | None] = {}
        self.verifications: list[tuple[str, str, str, str, defer.Deferred]] = []
        self.stanzas: list[domish.Element] = []
        self.events: list[tuple[str, Any]] = []
        #: Remote domains that have max_incoming_per_domain streams already.
        self.full_domains: set[str] = set()
        #: Shared read buckets by remote domain (none unless a test sets one).
        self.buckets: dict[str, Any] = {}
        self.stanza_buckets: dict[str, Any] = {}

    def requires_tls(self, remote: str | None) -> bool:
        """As the real manager."""
        return self.settings.require_encryption and remote not in self.settings.insecure_domains

    def dialback_allowed(self, remote: str | None) -> bool:
        """As the real manager."""
        return self.settings.allow_dialback and remote not in self.settings.trusted_domains

    def incoming_limit_reached(self, stream: Any, remote: str) -> bool:
        """Whether the test said the domain is full."""
        return remote in self.full_domains

    def read_bucket(self, remote: str) -> Any:
        """The bucket the test set for the domain, if any."""
        return self.buckets.get(remote)

    def stanza_bucket(self, remote: str) -> Any:
        """The stanza bucket the test set for the domain, if any."""
        return self.stanza_buckets.get(remote)

    def check_certificate(self, transport: Any, domain: str | None) -> str | None:
        """Whatever the test set for the domain (default: self-signed)."""
        return self.certificate_problems.get(domain, "certificate not trusted (self-signed)")

    def verify_dialback(self, local: str, remote: str, stream_id: str,
                        key: str) -> defer.Deferred:
        """Recorded; the test fires the Deferred."""
        d: defer.Deferred = defer.Deferred()
        self.verifications.append((local, remote, stream_id, key, d))
        return d

    def incoming_stanza(self, stream: Any, stanza: domish.Element) -> None:
        """Recorded."""
        self.stanzas.append(stanza)

    def stream_opened(self, stream: Any) -> None:
        """Recorded."""
        self.events.append(("opened", stream))

    def stream_closed(self, stream: Any) -> None:
        """Recorded."""
        self.events.append(("closed", stream))

    def stream_can_verify(self, stream: Any) -> None:
        """Recorded."""
        self.events.append(("can_verify", stream))

    def outgoing_ready(self, stream: Any) -> None:
        """Recorded."""
        self.events.append(("ready", stream))

    def outgoing_failed(self, stream: Any, condition: str, why: str) -> None:
        """Recorded."""
        self.events.append(("failed", condition))


def make_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def make_certificate(subject: str, key: Any, issuer: tuple[str, Any] | None = None, *,
                     dns: tuple[str, ...] = (), other_names: tuple[tuple[str, bytes], ...] = (),
                     not_before: datetime.datetime = NOW - datetime.timedelta(days=1),
                     not_after: datetime.datetime = NOW + datetime.timedelta(days=30),
                     ca: bool = False) -> x509.Certificate:
    """A certificate for ``subject`` signed by ``issuer`` (name, key), else self-signed."""
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    names = [x509.DNSName(d) for d in dns]
    names += [x509.OtherName(x509.ObjectIdentifier(oid), value) for oid, value in other_names]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def der_string(tag: int, text: str) -> bytes:
    """A short DER string (UTF8String 12, IA5String 22)."""
    data = text.encode()
    return bytes([tag, len(data)]) + data
