"""The web side of the server: the HTTP listeners and what is mounted on them.

:func:`build_web` gives an :class:`~xmppd.service.XMPPServer` its
:class:`~xmppd.http.site.HTTPService` (``[http]``) with host-meta
(XEP-0156), and, as configured, ``/metrics``, the WebSocket (RFC 7395),
BOSH (XEP-0206) and the HTTP upload service (XEP-0363). Without an HTTP
listener there is none of these (an upload domain set anyway is logged).
"""

from __future__ import annotations

from typing import Any

from xmppd.logs import logger

log = logger(__name__)


def build_web(server: Any) -> None:
    """Build the HTTP service and its parts as children of ``server`` (see the module)."""
    from xmppd.service import StartupError  # the server's start-up errors (no import cycle)

    config = server.config
    if not (config.http.listen or config.http.tls_listen):
        if config.upload.domain:
            log.warn("upload.domain is set but HTTP is off (http.listen and "
                     "http.tls_listen are empty): no upload service")
        return
    from xmppd.http.hostmeta import mount_host_meta
    from xmppd.http.site import HTTPService

    server.http = HTTPService(config.http, config.domain, reactor=server.reactor)
    mount_host_meta(server.http)
    server.http.setServiceParent(server)
    if config.metrics.enabled:
        from xmppd.metrics import mount_metrics

        server.metrics_lag = mount_metrics(server)
    if config.websocket.path:
        from xmppd.ws.websocket import mount_websocket

        server.websocket = mount_websocket(server.http, config.websocket,
                                           reactor=server.reactor)
    if config.bosh.path:
        from xmppd.bosh.resource import mount_bosh

        server.bosh = mount_bosh(server.http, config.bosh, reactor=server.reactor)
    if not config.upload.domain:
        return
    from xmppd.module import Point
    from xmppd.upload.service import UploadService

    try:
        server.upload = UploadService(
            config.upload, router=server.router, database=server.database,
            server_domain=config.domain, data_dir=config.data_dir, http=server.http,
            reactor=server.reactor)
    except OSError as e:
        raise StartupError(f"upload: cannot use {config.data_dir}: {e}") from None
    server.upload.setServiceParent(server)
    server.session_manager.modules.add_hook(Point.ACCOUNT_DELETED,
                                            server.upload.account_deleted)
