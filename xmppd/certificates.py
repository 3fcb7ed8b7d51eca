"""``xmppdctl cert``: put a certificate where the server will load it.

Both commands write the certificate and key the server uses for a
configuration: ``tls.certificate``/``tls.key`` when set, else the files the
server would generate in ``data_dir``. Files are replaced atomically (a
temporary file renamed over the old one), the key readable by its owner
only; when run as root, new files get the owner of the folder they are
written to, so a server running as its own user can read them. A running
server picks up the new files on reload (``systemctl reload xmppd``).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from xmppd import tls
from xmppd.check import certificate_paths
from xmppd.config import Config


class CertificateCommandError(Exception):
    """The certificate could not be generated or imported; str() says why."""


def generate(config: Config, force: bool = False) -> tuple[Path, Path]:
    """Write a new self-signed certificate for the served domains; returns its paths."""
    cert, key, _ = certificate_paths(config)
    if not force and (cert.exists() or key.exists()):
        raise CertificateCommandError(
            f"{cert if cert.exists() else key} exists; use --force to replace it"
        )
    folder = cert.parent
    temp_cert = folder / f".{cert.name}.new"
    temp_key = key.parent / f".{key.name}.new"
    try:
        for temp in (temp_cert, temp_key):
            temp.unlink(missing_ok=True)
        tls.ensure_certificate(temp_cert, temp_key, list(config.served_domains))
        _install(temp_key.read_bytes(), key, private=True)
        _install(temp_cert.read_bytes(), cert, private=False)
    except OSError as e:
        raise CertificateCommandError(f"cannot write {e.filename}: {e.strerror}") from None
    finally:
        for temp in (temp_cert, temp_key):
            temp.unlink(missing_ok=True)
    return cert, key


def import_certificate(
    config: Config, source_cert: Path, source_key: Path, force: bool = False
) -> tuple[Path, Path]:
    """Validate a certificate and key, then copy them into place; returns the paths.

    Refused (unless ``force``) when the certificate does not cover every
    served domain; always refused when it cannot be read, does not match the
    key, or has expired.
    """
    try:
        tls.server_tls_options(source_cert, source_key)
        chain = tls.load_certificate_chain(source_cert)
    except tls.CertificateProblem as e:
        raise CertificateCommandError(str(e)) from None
    expires = chain[0].not_valid_after_utc
    if expires <= datetime.datetime.now(datetime.UTC):
        raise CertificateCommandError(f"{source_cert}: expired on {expires:%Y-%m-%d}")
    missing = tls.certificate_mismatches(source_cert, config.served_domains)
    if missing and not force:
        raise CertificateCommandError(
            f"{source_cert}: not valid for {', '.join(missing)}; use --force to import it anyway"
        )
    cert, key, _ = certificate_paths(config)
    try:
        if Path(source_cert).resolve() == cert.resolve() and (
            Path(source_key).resolve() == key.resolve()
        ):
            return cert, key  # already in place
        cert_bytes, key_bytes = Path(source_cert).read_bytes(), Path(source_key).read_bytes()
        _install(key_bytes, key, private=True)
        _install(cert_bytes, cert, private=False)
    except OSError as e:
        raise CertificateCommandError(f"cannot write {e.filename}: {e.strerror}") from None
    return cert, key


def _install(data: bytes, target: Path, private: bool) -> None:
    """Atomically write ``target`` (mode 0600 for a key, 0644 otherwise)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o600 if private else 0o644)
        if os.geteuid() == 0:
            owner = target.stat() if target.exists() else target.parent.stat()
            os.chown(temp, owner.st_uid, owner.st_gid)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
