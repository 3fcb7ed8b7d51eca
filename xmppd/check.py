"""``xmppdctl check``: is this configuration ready to serve?

:func:`check_config` looks at what start-up will need, without changing
anything: the database (present, schema version), the certificate
(readable, matching its key, covering the served domains, not expired) and
the listeners (their ports free to bind). Each finding is a
:class:`Finding`; only ``FAIL`` findings make the check fail.

:func:`check_dns` (``xmppdctl check --dns``, it needs the network) lists
the DNS SRV records clients and other servers look up for the served domains.

With no certificate configured and none generated yet, the check notes that
start-up will generate a self-signed one: that is how the example
configuration works, not a problem.
"""

from __future__ import annotations

import datetime
import errno
import os
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.names import dns
from twisted.names import error as dns_error

from xmppd import tls
from xmppd.config import Config
from xmppd.storage.schema import MIGRATIONS

OK, NOTE, WARN, FAIL = "ok", "note", "warn", "FAIL"

#: A certificate expiring sooner than this gets a warning.
EXPIRY_WARNING = datetime.timedelta(days=21)


@dataclass(frozen=True)
class Finding:
    """One line of the report: level (ok, note, warn, FAIL), subject, message."""

    level: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.level:<5} {self.subject}: {self.message}"


def generated_certificate_paths(config: Config) -> tuple[Path, Path]:
    """Where the server keeps the certificate it generates (no tls.* configured)."""
    return config.data_dir / f"{config.domain}.crt", config.data_dir / f"{config.domain}.key"


def certificate_paths(config: Config) -> tuple[Path, Path, bool]:
    """The certificate and key the server uses, and whether they are configured."""
    if config.tls.certificate is not None and config.tls.key is not None:
        return config.tls.certificate, config.tls.key, True
    cert, key = generated_certificate_paths(config)
    return cert, key, False


def check_config(config: Config, now: datetime.datetime | None = None) -> list[Finding]:
    """Every finding for a loaded configuration."""
    findings = check_database(config)
    findings += check_certificate(config, now)
    findings += check_listeners(config)
    findings += check_control_socket(config)
    return findings


def check_control_socket(config: Config) -> list[Finding]:
    """A control socket path the server could not use (nothing when it is fine or off)."""
    from xmppd.control import MAX_SOCKET_PATH

    path = config.control_socket
    if path is None or len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return []
    return [Finding(WARN, "server.control_socket", f"{path} is longer than {MAX_SOCKET_PATH} "
                    "bytes: the server will run without a control socket (xmppdctl s2s "
                    "will not work); set a shorter path")]


def check_database(config: Config) -> list[Finding]:
    """The database file: absent (created at start), current, older, or too new."""
    path = config.database_path
    subject = "database"
    if not path.exists():
        folder = config.data_dir
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK):
            return [Finding(WARN, subject, f"{path} does not exist and {folder} is not "
                            "writable by this user (fine if the server runs as another user)")]
        return [Finding(NOTE, subject, f"{path} does not exist yet; created on first start")]
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as e:
        return [Finding(FAIL, subject, f"{path}: {e}")]
    latest = len(MIGRATIONS)
    if version > latest:
        return [Finding(FAIL, subject, f"{path}: schema version {version} is newer than this "
                        f"xmppd knows ({latest}); upgrade xmppd")]
    if version < latest:
        return [Finding(NOTE, subject, f"{path}: schema version {version}; migrated to "
                        f"{latest} on next start")]
    return [Finding(OK, subject, f"{path} (schema version {version})")]


def check_certificate(config: Config, now: datetime.datetime | None = None) -> list[Finding]:
    """The certificate and key: readable, matching, valid for the served domains."""
    cert, key, configured = certificate_paths(config)
    if not configured and not (cert.exists() and key.exists()):
        return [Finding(NOTE, "tls", "no certificate configured; a self-signed one for "
                        f"{', '.join(config.served_domains)} is generated at {cert} on first "
                        "start (or now: xmppdctl cert)")]
    findings = []
    try:
        chain = tls.load_certificate_chain(cert)
        findings.append(Finding(OK, "tls.certificate", f"{cert} is readable"))
        tls.server_tls_options(cert, key)
        findings.append(Finding(OK, "tls.key", f"{key} matches the certificate"))
    except tls.CertificateProblem as e:
        return findings + [Finding(FAIL, "tls", str(e))]
    missing = tls.certificate_mismatches(cert, config.served_domains)
    if missing:
        findings.append(Finding(FAIL, "tls.certificate",
                                f"not valid for {', '.join(missing)}"))
    else:
        findings.append(Finding(OK, "tls.certificate",
                                f"covers {', '.join(config.served_domains)}"))
    now = now or datetime.datetime.now(datetime.UTC)
    expires = chain[0].not_valid_after_utc
    if expires <= now:
        findings.append(Finding(FAIL, "tls.certificate", f"expired on {expires:%Y-%m-%d}"))
    elif expires - now < EXPIRY_WARNING:
        findings.append(Finding(WARN, "tls.certificate", f"expires soon, on {expires:%Y-%m-%d}"))
    else:
        findings.append(Finding(OK, "tls.certificate", f"valid until {expires:%Y-%m-%d}"))
    return findings


def listeners(config: Config) -> list[tuple[str, str]]:
    """The configured listeners as (config key, endpoint description)."""
    found = [("c2s.listen", config.c2s.listen)]
    if config.c2s.direct_tls_listen:
        found.append(("c2s.direct_tls_listen", config.c2s.direct_tls_listen))
    if config.components.listen and config.components.secrets:
        found.append(("components.listen", config.components.listen))
    if config.http.listen:
        found.append(("http.listen", config.http.listen))
    if config.http.tls_listen:
        found.append(("http.tls_listen", config.http.tls_listen))
    if config.s2s.enabled and config.s2s.listen:
        found.append(("s2s.listen", config.s2s.listen))
    if config.s2s.enabled and config.s2s.direct_tls_listen:
        found.append(("s2s.direct_tls_listen", config.s2s.direct_tls_listen))
    return found


def check_listeners(config: Config) -> list[Finding]:
    """Whether each listener's port can be bound now."""
    return [check_listener(key, description) for key, description in listeners(config)]


def check_listener(key: str, description: str) -> Finding:
    """Try to bind one listener's address (then release it at once)."""
    from twisted.internet import endpoints

    try:
        kind, args, kwargs = endpoints._parseServer(description, None)
    except Exception as e:
        return Finding(FAIL, key, f"{description!r}: {e}")
    prefix = getattr(kind, "prefix", kind)
    if isinstance(prefix, str):
        prefix = prefix.lower()
    if prefix == "systemd":
        return Finding(NOTE, key, f"{description}: socket activation, systemd binds it")
    if prefix == "tcp":
        port, interface = int(args[0]), kwargs.get("interface", "")
    elif prefix == "tcp6":
        port = int(kwargs.get("port", args[0] if args else 0))
        interface = kwargs.get("interface", "::")
    else:
        return Finding(NOTE, key, f"{description}: not a TCP listener; not checked")
    if port == 0:
        return Finding(OK, key, f"{description}: any free port")
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((interface, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                reason = "the port is in use (is xmppd already running?)"
            elif e.errno == errno.EACCES:
                reason = "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
            elif e.errno == errno.EADDRNOTAVAIL:
                reason = f"{interface} is not an address of this host"
            else:
                reason = e.strerror or str(e)
            return Finding(FAIL, key, f"{description}: {reason}")
    return Finding(OK, key, f"{description}: port {port} is free")


#: SRV services looked up by ``xmppdctl check --dns``: (service, what it is for,
#: whether only the server's own domain has it: clients log in there only).
SRV_SERVICES = (
    ("_xmpp-client._tcp", "clients, STARTTLS (RFC 6120)", True),
    ("_xmpps-client._tcp", "clients, direct TLS (XEP-0368)", True),
    ("_xmpp-server._tcp", "other servers, STARTTLS (RFC 6120)", False),
    ("_xmpps-server._tcp", "other servers, direct TLS (XEP-0368)", False),
)


@defer.inlineCallbacks
def check_dns(config: Config, resolver: Any):
    """Fire with findings on the DNS SRV records of the served domains.

    ``resolver`` is a :mod:`twisted.names` resolver (``lookupService``). A
    record set is listed as found (target:port, priority, weight); a missing
    one is a note (clients and servers then fall back to the domain's own
    A/AAAA records on the standard port), a single ``.`` target says the
    service is refused on purpose, and a lookup that fails otherwise is a
    warning. With federation off the server records are not looked up.
    """
    findings: list[Finding] = []
    for domain in config.served_domains:
        for service, purpose, own_domain_only in SRV_SERVICES:
            if own_domain_only and domain != config.domain:
                continue
            if not own_domain_only and not config.s2s.enabled:
                continue
            name = f"{service}.{domain}"
            subject = f"dns {name}"
            try:
                answers, _, _ = yield resolver.lookupService(name)
            except dns_error.DNSNameError:  # NXDOMAIN: no such record
                answers = []
            except Exception as e:  # noqa: BLE001 - timeouts, refused queries: reported
                findings.append(Finding(WARN, subject, f"lookup failed: {e.__class__.__name__}"))
                continue
            records = [a.payload for a in answers if a.type == dns.SRV]
            if not records:
                port = 5222 if "client" in service else 5269
                findings.append(Finding(NOTE, subject, f"no record ({purpose}): the "
                                                       f"fallback is {domain}:{port}, STARTTLS"))
            elif len(records) == 1 and str(records[0].target) in ("", "."):
                findings.append(Finding(NOTE, subject, f"'.': no service ({purpose})"))
            else:
                listed = ", ".join(
                    f"{r.target}:{r.port} (priority {r.priority}, weight {r.weight})"
                    for r in sorted(records, key=lambda r: (r.priority, -r.weight)))
                findings.append(Finding(OK, subject, f"{listed} ({purpose})"))
    return findings
