"""The checks of the web sections of the configuration: ``[http]``, ``[metrics]``,
``[websocket]``, ``[bosh]`` and ``[upload]``.

Each function reads its section with :mod:`xmppd.config`'s reader and checks
what a type alone does not (endpoints, paths, origins, addresses, a domain
not taken by another service). :func:`xmppd.config.load_config` calls them.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from xmppd.config import _domain, _endpoint, _Reader
from xmppd.sections import (
    BoshSettings,
    HTTPSettings,
    MetricsSettings,
    UploadSettings,
    WebSocketSettings,
)


def metrics_settings(r: _Reader) -> MetricsSettings:
    """``[metrics]``: the addresses allowed to read ``/metrics``."""
    import ipaddress

    metrics = r.section("metrics")
    if not metrics.path.startswith("/") or metrics.path.strip("/") == "":
        raise r.fail("metrics.path", f"{metrics.path!r} is not a path like /metrics")
    for allowed in metrics.allowed:
        try:
            ipaddress.ip_network(allowed, strict=False)
        except ValueError:
            raise r.fail("metrics.allowed", f"{allowed!r} is not an address or network") from None
    return metrics


def http_settings(r: _Reader) -> HTTPSettings:
    """``[http]``: the listeners, the external URL and the trusted proxies."""
    import ipaddress
    from urllib.parse import urlsplit

    http = r.section("http")
    listen = _endpoint(r, "http.listen", http.listen, optional=True)
    tls_listen = _endpoint(r, "http.tls_listen", http.tls_listen, optional=True)
    url = http.external_url
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
                or parts.fragment:
            raise r.fail("http.external_url", f"{url!r} is not an http(s) URL without query")
        if not url.endswith("/"):
            url += "/"
    for proxy in http.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise r.fail("http.trusted_proxies",
                         f"{proxy!r} is not an IP address or network") from None
    return dataclasses.replace(http, listen=listen, tls_listen=tls_listen, external_url=url)


def _free_path(r: _Reader, key: str, path: str, example: str, taken: str = "") -> str:
    """A path of our own on the HTTP listener, normalised (``""``: off).

    Plain segments only (no ``.``/``..``, nothing to escape), not under
    ``/.well-known`` or ``/upload``, and not ``taken`` by another endpoint.
    """
    if not path:
        return path
    segments = path.strip("/").split("/")
    normal = "/" + "/".join(segments)
    if not path.startswith("/") or "" in segments or any(
            s in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._~-]+", s) for s in segments) \
            or segments[0] in (".well-known", "upload") \
            or (taken and normal == taken.rstrip("/")):
        raise r.fail(key, f"{path!r} is not a free path like '{example}'")
    return normal


def _is_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not (
        parts.path or parts.query or parts.fragment or parts.username)


def websocket_settings(r: _Reader) -> WebSocketSettings:
    """``[websocket]``: its path and allowed origins, and a usable ping interval."""
    websocket = r.section("websocket")
    path = _free_path(r, "websocket.path", websocket.path, "/xmpp-websocket")
    for origin in websocket.allowed_origins:
        if not _is_origin(origin):
            raise r.fail("websocket.allowed_origins", f"{origin!r} is not an origin like "
                         "'https://chat.example.org'")
    if 0 < websocket.ping_interval < 1:
        # autobahn runs its timers in 0.2 s batches: shorter ones misfire.
        raise r.fail("websocket.ping_interval", "must be 0 (no pings) or at least 1")
    return dataclasses.replace(websocket, path=path)


def bosh_settings(r: _Reader) -> BoshSettings:
    """``[bosh]``: its path (not the WebSocket's) and CORS origins."""
    bosh = r.section("bosh")
    path = _free_path(r, "bosh.path", bosh.path, "/http-bind",
                      taken=r.section("websocket").path)
    for origin in bosh.cors_origins:
        if origin != "*" and not _is_origin(origin):
            raise r.fail("bosh.cors_origins", f"{origin!r} is not an origin like "
                         "'https://chat.example.org' (or '*')")
    return dataclasses.replace(bosh, path=path)


def upload_settings(r: _Reader, taken: tuple[str | None, ...],
                    secrets: dict[str, str]) -> UploadSettings:
    """``[upload]``: a domain of its own (not ``taken``, no component's) and content types."""
    upload = r.section("upload")
    upload_domain = _domain(r, "upload.domain", upload.domain) if upload.domain else None
    if upload_domain and upload_domain in taken:
        raise r.fail("upload.domain", "must differ from server.domain, muc.domain and "
                     "pubsub.domain")
    if upload_domain in secrets:
        raise r.fail("components.secrets", "a component cannot take a served domain")
    for kind in upload.allowed_types:
        major, _, minor = kind.partition("/")
        if not major or not minor or "*" in major or (minor != "*" and "*" in minor):
            raise r.fail("upload.allowed_types", f"{kind!r} is not a content type "
                         "(`type/subtype` or `type/*`)")
    return dataclasses.replace(upload, domain=upload_domain,
                               allowed_types=tuple(k.lower() for k in upload.allowed_types))
