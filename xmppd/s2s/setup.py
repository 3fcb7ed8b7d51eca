"""Building the S2S manager from the configuration (the composition root's part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xmppd import tls
from xmppd.config import Config
from xmppd.s2s.dialback import load_secret
from xmppd.s2s.manager import S2SManager, client_tls_options, server_tls_options


def s2s_tls_options(tls_paths: tuple[Path, Path]) -> tuple[Any, Any]:
    """The S2S server-side and client-side TLS options for a certificate and key.

    Raises ``tls.CertificateProblem`` when they cannot be used.
    """
    cert, key = tls_paths
    chain = tls.load_certificate_chain(cert)
    private_key = tls.load_private_key(key)
    return (server_tls_options(tls.server_tls_options(cert, key)),
            client_tls_options(private_key, chain))


def make_s2s_manager(config: Config, router: Any, tls_paths: tuple[Path, Path],
                     reactor: Any) -> S2SManager:
    """The S2S manager for a configuration, with the server's certificate.

    Raises OSError when the dialback secret cannot be stored and
    ``tls.CertificateProblem`` when the certificate cannot be used.
    """
    settings = config.s2s
    server_side, client_side = s2s_tls_options(tls_paths)
    return S2SManager(
        settings, config.limits, router, config.served_domains,
        load_secret(settings.secret, config.data_dir), reactor=reactor,
        server_tls_options=server_side, client_tls_options=client_side)
