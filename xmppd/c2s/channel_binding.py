"""Channel binding data of a client's TLS connection, for SCRAM-*-PLUS (RFC 5802 §6).

Two types, both tied to this very connection so that a man in the middle
with another TLS session cannot relay the authentication:

* ``tls-exporter`` (RFC 9266): 32 bytes exported from the TLS 1.3 session
  with the label ``EXPORTER-Channel-Binding`` and no context. Offered on
  TLS 1.3 only (on TLS 1.2 it is only safe with the extended master
  secret, which pyOpenSSL cannot tell us about).
* ``tls-server-end-point`` (RFC 5929 §4): the hash of the server's
  certificate (DER), with the certificate's signature hash, or SHA-256
  when that is MD5 or SHA-1 (or unknown).

``tls-unique`` is not offered: it is broken without the extended master
secret and undefined for TLS 1.3 (RFC 9266 §1). The types are advertised
with XEP-0440 (``urn:xmpp:sasl-cb:0``).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

TLS_EXPORTER = "tls-exporter"
TLS_SERVER_END_POINT = "tls-server-end-point"
NS_SASL_CB = "urn:xmpp:sasl-cb:0"
EXPORTER_LABEL = b"EXPORTER-Channel-Binding"


def end_point_hash(certificate: x509.Certificate) -> bytes:
    """RFC 5929 §4.1: the certificate's hash with its signature hash (SHA-256 for MD5/SHA-1)."""
    try:
        algorithm = certificate.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - an algorithm cryptography does not know
        algorithm = None
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate.public_bytes(Encoding.DER))
    return digest.finalize()


#: SHA-256 of a server certificate -> its end-point hash (a server has a few certificates).
_END_POINT_HASHES: dict[bytes, bytes] = {}
MAX_CACHED_CERTIFICATES = 64


def _cached_end_point_hash(certificate: Any) -> bytes:
    """end_point_hash of a pyOpenSSL certificate, computed once per certificate.

    Every stream start over TLS offers channel binding, so this runs three
    times per login; the digest of the DER (in OpenSSL) is the cache key.
    """
    key = certificate.digest("sha256")
    found = _END_POINT_HASHES.get(key)
    if found is None:
        found = end_point_hash(certificate.to_cryptography())
        if len(_END_POINT_HASHES) >= MAX_CACHED_CERTIFICATES:
            _END_POINT_HASHES.clear()  # certificates reloaded many times: start over
        _END_POINT_HASHES[key] = found
    return found


def channel_bindings(tls: Any) -> dict[str, bytes]:
    """Type -> data for a pyOpenSSL server connection, the preferred type first.

    Empty when the handshake is not done or the connection gives nothing.
    """
    bindings: dict[str, bytes] = {}
    try:
        if tls.get_protocol_version_name() == "TLSv1.3":
            bindings[TLS_EXPORTER] = tls.export_keying_material(EXPORTER_LABEL, 32)
        certificate = tls.get_certificate()
        if certificate is not None:
            bindings[TLS_SERVER_END_POINT] = _cached_end_point_hash(certificate)
    except Exception:  # noqa: BLE001 - no binding is a safe answer: plain SCRAM remains
        return {}
    return bindings
