"""TLS: the server certificate, its generation, and the pyOpenSSL context.

* :func:`ensure_certificate` creates a self-signed certificate for the served
  domains when none exists yet (first start on the embedded defaults).
* :func:`server_tls_options` loads a PEM certificate chain and key into a
  Twisted ``CertificateOptions`` that allows TLS 1.2 and newer only.
* :func:`certificate_mismatches` checks, with service-identity, which served
  domains the certificate does not cover, so start-up can warn about it.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet import ssl

CERTIFICATE_DAYS = 3 * 365


class CertificateProblem(Exception):
    """A certificate or key that cannot be used; str() names the file."""


def ensure_certificate(
    cert_path: Path, key_path: Path, domains: list[str] | tuple[str, ...]
) -> bool:
    """Generate a self-signed certificate and key unless both files exist.

    Returns True when it generated them. The key file is created readable by
    its owner only.
    """
    cert_path, key_path = Path(cert_path), Path(key_path)
    if cert_path.exists() and key_path.exists():
        return False
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return True


def load_certificate_chain(cert_path: Path) -> list[x509.Certificate]:
    """Read a PEM file holding the server certificate first, then its chain."""
    try:
        data = Path(cert_path).read_bytes()
    except OSError as e:
        raise CertificateProblem(f"{cert_path}: cannot read: {e.strerror}") from None
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateProblem(f"{cert_path}: not a PEM certificate") from None
    return chain


def load_private_key(key_path: Path):
    """Read an unencrypted PEM private key."""
    try:
        data = Path(key_path).read_bytes()
    except OSError as e:
        raise CertificateProblem(f"{key_path}: cannot read: {e.strerror}") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CertificateProblem(f"{key_path}: not an unencrypted PEM private key") from None


def server_tls_options(cert_path: Path, key_path: Path) -> ssl.CertificateOptions:
    """Certificate options for the server side: TLS 1.2 or newer, no compression."""
    chain = load_certificate_chain(cert_path)
    key = load_private_key(key_path)
    if chain[0].public_key().public_numbers() != key.public_key().public_numbers():
        raise CertificateProblem(f"{key_path}: this key does not belong to {cert_path}")
    options = ssl.CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
    options.getContext().set_alpn_select_callback(select_alpn)
    return options


#: What the server speaks after TLS, by preference: XMPP clients (XEP-0368
#: direct TLS, and after STARTTLS), then HTTP/1.1 (the HTTPS listener shares
#: the context).
ALPN_PROTOCOLS = (b"xmpp-client", b"http/1.1")


def select_alpn(connection: Any, offered: list[bytes]) -> Any:
    """ALPN: the first of :data:`ALPN_PROTOCOLS` the client offers, else none.

    Twisted's own callback answers a client offering only protocols it was
    not told about with an empty name, which OpenSSL turns into an
    ``internal error`` alert: a client offering ``xmpp-client`` (as
    Conversations does on direct TLS) could not connect at all.
    """
    for protocol in ALPN_PROTOCOLS:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def certificate_mismatches(cert_path: Path, domains: list[str] | tuple[str, ...]) -> list[str]:
    """The served domains that the certificate is not valid for."""
    certificate = load_certificate_chain(cert_path)[0]
    missing = []
    for domain in domains:
        try:
            verify_certificate_hostname(certificate, domain)
        except (VerificationError, CertificateError):
            missing.append(domain)
    return missing
