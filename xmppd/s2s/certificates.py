"""Whether a remote server's certificate is valid for its domain (RFC 6125, RFC 7712).

The chain must lead to a trusted authority (pyOpenSSL's store; the
certificates' validity periods are checked at ``now``) and the leaf must name
the domain, in any of the forms RFC 7712 allows for XMPP servers:
a DNS-ID, an SRV-ID for ``_xmpp-server`` (both checked with service-identity)
or an XmppAddr (``id-on-xmppAddr`` otherName).
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.cryptography import extract_patterns
from service_identity.hazmat import DNS_ID, SRV_ID, verify_service_identity
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                  "/etc/ssl/cert.pem")


def load_trust_roots(ca_file: str = "") -> list[x509.Certificate]:
    """The authorities to trust: ``ca_file``'s, else the system bundle's (may be empty)."""
    candidates = (ca_file,) if ca_file else SYSTEM_BUNDLES
    for name in candidates:
        path = Path(name)
        if path.is_file():
            try:
                with warnings.catch_warnings():  # old roots with odd serial numbers
                    warnings.simplefilter("ignore")
                    return x509.load_pem_x509_certificates(path.read_bytes())
            except (ValueError, OSError):
                return []
    return []


def names_domain(certificate: x509.Certificate, domain: str) -> bool:
    """Whether the certificate names the domain (DNS-ID, SRV-ID or XmppAddr)."""
    try:
        patterns = extract_patterns(certificate)
    except Exception:
        return False
    for identity in (DNS_ID(domain), SRV_ID("_xmpp-server." + domain)):
        try:
            verify_service_identity(patterns, obligatory_ids=[identity], optional_ids=[])
            return True
        except (VerificationError, Exception):
            continue
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    for name in names.value.get_values_for_type(x509.OtherName):
        if name.type_id == ID_ON_XMPPADDR and _utf8_string(name.value) == domain:
            return True
    return False


def _utf8_string(der: bytes) -> str | None:
    """The text of a DER UTF8String (tag 12) with a short length, else None."""
    if len(der) < 2 or der[0] != 12 or der[1] >= 0x80 or len(der) != der[1] + 2:
        return None
    try:
        return der[2:].decode().lower()
    except UnicodeDecodeError:
        return None


def certificate_problem(chain: Sequence[x509.Certificate], domain: str,
                        roots: Sequence[x509.Certificate],
                        now: datetime.datetime | None = None) -> str | None:
    """Why the chain (leaf first) is not valid for ``domain``, or None when it is."""
    if not chain:
        return "no certificate"
    leaf = chain[0]
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now:
        return "certificate expired"
    if leaf.not_valid_before_utc > now:
        return "certificate not yet valid"
    if not names_domain(leaf, domain):
        return f"certificate does not name {domain}"
    store = crypto.X509Store()
    for root in roots:
        store.add_cert(crypto.X509.from_cryptography(root))
    store.set_time(now.replace(tzinfo=None))
    context = crypto.X509StoreContext(
        store, crypto.X509.from_cryptography(leaf),
        chain=[crypto.X509.from_cryptography(c) for c in chain[1:]])
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as e:
        return f"certificate not trusted ({e})"
    return None


def pem(certificate: x509.Certificate) -> bytes:
    """A certificate in PEM (for logs and tests)."""
    return certificate.public_bytes(serialization.Encoding.PEM)


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLSCreator:
    """Client TLS to a remote server (STARTTLS or ``_xmpps-server``): our certificate,
    SNI with the remote domain (so a server of many domains picks the right
    certificate), the ``alpn`` protocols if any, no verification here.

    The certificate is checked after the handshake (like after STARTTLS),
    so that dialback can still authenticate a server whose certificate
    does not verify.
    """

    def __init__(self, options: Any, server_name: str, alpn: Sequence[bytes] = ()):
        self.options = options
        self.server_name = server_name
        #: ALPN protocols to offer (``xmpp-server`` on direct TLS, XEP-0368).
        self.alpn = tuple(alpn)

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        """A client-side OpenSSL connection."""
        connection = SSL.Connection(self.options.getContext(), None)
        connection.set_app_data(tls_protocol)
        connection.set_tlsext_host_name(self.server_name.encode("idna"))
        if self.alpn:
            connection.set_alpn_protos(list(self.alpn))
        connection.set_connect_state()
        return connection
