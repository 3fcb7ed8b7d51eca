"""XEP-0156 host-meta: ``/.well-known/host-meta`` (XRD) and ``host-meta.json`` (JRD).

The documents list the alternative connection methods registered on the
:class:`~xmppd.http.site.HTTPService` (``add_link``): the WebSocket
(``urn:xmpp:alt-connections:websocket``, a ``ws``/``wss`` URL) and BOSH
(``urn:xmpp:alt-connections:xbosh``) endpoints, with URLs built from
``external_url``. With no transport registered they are valid and empty.
Browsers fetch them from other origins: ``Access-Control-Allow-Origin: *``.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import quoteattr

from twisted.web import resource, server

NS_XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket"
REL_BOSH = "urn:xmpp:alt-connections:xbosh"


def links(http_service: Any) -> list[tuple[str, str]]:
    """(rel, href) of every registered alternative connection method."""
    return [(rel, http_service.url_for(path, websocket=(rel == REL_WEBSOCKET)))
            for rel, path in http_service.links]


def xrd(http_service: Any) -> bytes:
    """The XRD document."""
    lines = ["<?xml version='1.0' encoding='utf-8'?>", f"<XRD xmlns='{NS_XRD}'>"]
    for rel, href in links(http_service):
        lines.append(f"  <Link rel={quoteattr(rel)} href={quoteattr(href)}/>")
    lines.append("</XRD>")
    return ("\n".join(lines) + "\n").encode()


def jrd(http_service: Any) -> bytes:
    """The JRD (JSON) document."""
    document = {"links": [{"rel": rel, "href": href} for rel, href in links(http_service)]}
    return (json.dumps(document, indent=2) + "\n").encode()


class HostMeta(resource.Resource):
    """One of the two documents (GET, HEAD; OPTIONS for CORS preflight)."""

    isLeaf = True

    def __init__(self, http_service: Any, as_json: bool):
        super().__init__()
        self.http = http_service
        self.as_json = as_json

    def _cors(self, request: server.Request) -> None:
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"access-control-allow-methods", b"GET, HEAD, OPTIONS")

    def render_GET(self, request: server.Request) -> bytes:  # noqa: N802 - Twisted's API
        """The document."""
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            return b"not found\n"
        self._cors(request)
        if self.as_json:
            request.setHeader(b"content-type", b"application/json")
            return jrd(self.http)
        request.setHeader(b"content-type", b"application/xrd+xml; charset=utf-8")
        return xrd(self.http)

    render_HEAD = render_GET  # noqa: N815 - Twisted's API (twisted.web drops the body)

    def render_OPTIONS(self, request: server.Request) -> bytes:  # noqa: N802 - Twisted's API
        """CORS preflight."""
        self._cors(request)
        request.setResponseCode(204)
        return b""


def mount_host_meta(http_service: Any) -> None:
    """Mount both documents under ``/.well-known/``."""
    http_service.mount("/.well-known/host-meta", HostMeta(http_service, as_json=False))
    http_service.mount("/.well-known/host-meta.json", HostMeta(http_service, as_json=True))
