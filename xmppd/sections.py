"""The core sections of the configuration: one frozen dataclass per section.

Each field is a key: its type, its default and, through :func:`setting`, its
one-line description, its bounds and whether a reload applies it. Reading,
checking and everything derived from these lives in :mod:`xmppd.config`,
which also re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
CREATE_ROOMS = ("anyone", "local", "admins")


def setting(default: Any, doc: str, *, minimum: float | None = None, positive: bool = False,
            choices: tuple[str, ...] | None = None, live: bool = False) -> Any:
    """A config key: its default and description, bounds, and whether reload applies it."""
    metadata = {"doc": doc, "minimum": minimum, "positive": positive, "choices": choices,
                "live": live}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: the domain, where data lives, administrators."""

    domain: str = setting("localhost", "the domain users live on")
    data_dir: str = setting("data", "database (`xmppd.sqlite`) and generated certificate")
    admins: tuple[str, ...] = setting((), "bare JIDs with service administrator rights", live=True)
    shutdown_timeout: float = setting(
        15.0, "seconds a graceful shutdown (SIGTERM) may take", positive=True)
    control_socket: str = setting(
        "control.sock", "UNIX socket through which `xmppdctl` asks the running server "
        "(`xmppdctl s2s`); mode 0600: the server's user only; relative to `data_dir`; "
        "`\"\"` turns it off")


@dataclass(frozen=True)
class TLSSettings:
    """``[tls]``: certificate and key paths (resolved; None: generate one)."""

    certificate: Path | None = setting(
        None, "PEM certificate chain; empty: generate a self-signed one", live=True)
    key: Path | None = setting(None, "its private key (PEM)", live=True)


@dataclass(frozen=True)
class C2SSettings:
    """``[c2s]``: client listeners."""

    listen: str = setting("tcp:5222", "client listener (a Twisted endpoint description)")
    direct_tls_listen: str = setting("tcp:5223",
                                     "direct TLS listener (XEP-0368); `\"\"` turns it off")
    require_encryption: bool = setting(True, "refuse authentication before TLS", live=True)


@dataclass(frozen=True)
class ComponentSettings:
    """``[components]``: external components (XEP-0114)."""

    listen: str = setting("tcp:5347:interface=127.0.0.1", "external component listener (XEP-0114)")
    secrets: dict[str, str] = setting({}, "one secret per component domain")


@dataclass(frozen=True)
class MUCSettings:
    """``[muc]``: the multi-user chat service; domain is None when disabled."""

    domain: str | None = setting("conference.localhost", "the MUC service; `\"\"` disables it")
    create_rooms: str = setting("anyone", "who may create rooms: `anyone`, `local` or `admins`",
                                choices=CREATE_ROOMS, live=True)
    password_max_failures: int = setting(
        5, "wrong room passwords (per room and user, within the window) before joins are refused",
        minimum=1)
    password_failure_window: float = setting(60.0, "seconds over which wrong passwords count",
                                             positive=True)
    password_backoff: float = setting(10.0, "seconds joins stay refused, doubling per further "
                                      "failure", positive=True)
    password_backoff_max: float = setting(3600.0, "the longest such refusal", positive=True)
    message_rate: float = setting(5.0, "per-occupant messages a second; excess gets "
                                  "`resource-constraint`", positive=True)
    message_burst: int = setting(20, "per-occupant burst of messages", minimum=1)
    archive_max_messages: int = setting(
        10000, "messages one room's archive keeps at most (the oldest go, in the background)",
        minimum=1)
    archive_expire_after: float = setting(
        0.0, "seconds room archives keep a message; 0: until the cap or the room's end "
        "(Prosody: one week)", minimum=0)


@dataclass(frozen=True)
class PubSubSettings:
    """``[pubsub]``: publish-subscribe (XEP-0060) for PEP and the pubsub service."""

    domain: str | None = setting("pubsub.localhost", "the pubsub service; `\"\"` disables it "
                                 "(PEP on accounts stays)")
    create_nodes: str = setting("local", "who may create nodes on the pubsub service: "
                                "`anyone`, `local` or `admins`", choices=CREATE_ROOMS)
    expose_publisher: bool = setting(False, "show every item's publisher (`publisher` "
                                     "attribute) on the pubsub service; a node shows it "
                                     "anyway when its `pubsub#itemreply` is `publisher`")
    max_items: int = setting(256, "items one node keeps at most (what `max` means in "
                             "`pubsub#max_items`)", minimum=1)
    max_item_size: int = setting(131072, "bytes of one item's payload; a larger one gets "
                                 "`not-acceptable` + `payload-too-big`", minimum=1024)
    max_nodes: int = setting(256, "nodes one account may own (its PEP nodes, and nodes it "
                             "created on the pubsub service)", minimum=1)
    max_subscriptions: int = setting(1024, "subscriptions one node may have", minimum=1)


@dataclass(frozen=True)
class HTTPSettings:
    """``[http]``: the HTTP listeners that modules and services mount paths on."""

    listen: str = setting("tcp:5280:interface=127.0.0.1", "plain HTTP listener (for a reverse "
                          "proxy on the same host); `\"\"` turns it off")
    tls_listen: str = setting("", "HTTPS listener with the server's certificate, e.g. "
                              "`\"tcp:5281\"`; `\"\"` turns it off")
    external_url: str = setting("", "the base URL clients reach the listeners at (behind a "
                                "proxy); `\"\"`: `https://DOMAIN:PORT/` of `tls_listen`, else "
                                "`http://DOMAIN:PORT/` of `listen`")
    trusted_proxies: tuple[str, ...] = setting(
        (), "addresses or networks (CIDR) of reverse proxies whose `X-Forwarded-For` and "
        "`X-Forwarded-Proto` count (loopback always counts)")
    max_request_size: int = setting(1048576, "bytes of a request body (an upload's own limit "
                                    "is `upload.max_file_size`); more gets 413", minimum=1024)
    request_rate: float = setting(20.0, "requests a second from one client address (the "
                                  "forwarded one behind a trusted proxy); excess gets 429; 0: "
                                  "no limit", minimum=0)
    request_burst: int = setting(100, "requests one address may make at once", minimum=1)
    timeout: float = setting(60.0, "seconds a connection may stay silent (headers or body "
                             "not arriving)", positive=True)


@dataclass(frozen=True)
class MetricsSettings:
    """``[metrics]``: OpenMetrics on the HTTP listener, for Prometheus."""

    enabled: bool = setting(False, "serve the server's figures at `path` (OpenMetrics text)")
    path: str = setting("/metrics", "where on the HTTP listener")
    allowed: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"), "addresses or networks (CIDR) that may read them (behind a "
        "trusted proxy: the forwarded address); others get 403")


@dataclass(frozen=True)
class WebSocketSettings:
    """``[websocket]``: XMPP over WebSocket (RFC 7395) on the HTTP listeners."""

    path: str = setting("/xmpp-websocket", "where the WebSocket endpoint is served on the HTTP "
                        "listeners (host-meta lists it); `\"\"` turns it off")
    allowed_origins: tuple[str, ...] = setting(
        (), "browser origins allowed to connect, e.g. `\"https://chat.example.org\"` or "
        "`\"https://*.example.org\"` (a port other than the scheme's must be given); empty: "
        "any. A handshake without an `Origin` header (not a browser) is always allowed")
    secure_from_trusted: bool = setting(
        True, "plain `ws://` from loopback or `http.trusted_proxies` counts as encrypted "
        "(unless the proxy says `X-Forwarded-Proto: http`); `false`: only `wss://` on "
        "`http.tls_listen` does. Credentials are accepted only on encrypted connections")
    ping_interval: float = setting(30.0, "seconds between WebSocket pings the server sends "
                                   "(keepalive through proxies; at least 1); 0: none",
                                   minimum=0)
    ping_timeout: float = setting(30.0, "seconds to answer a ping before the connection is "
                                  "dropped", minimum=1)


@dataclass(frozen=True)
class BoshSettings:
    """``[bosh]``: XMPP over BOSH (XEP-0124, XEP-0206) on the HTTP listeners."""

    path: str = setting("/http-bind", "where the BOSH endpoint is served on the HTTP listeners "
                        "(host-meta lists it); `\"\"` turns it off")
    max_wait: int = setting(120, "longest seconds a request is held waiting for something to "
                            "send (a client asking for less gets its `wait`)", minimum=1)
    max_inactivity: int = setting(60, "seconds a session may have no request held before it "
                                  "is dropped like a broken connection", minimum=1)
    max_hold: int = setting(1, "requests the server holds at once (`hold`); 0: polling "
                            "sessions only", minimum=0)
    max_requests: int = setting(2, "requests a client may have open at once (`requests`: "
                                "`hold` + 1, at most this)", minimum=1)
    max_pause: int = setting(300, "longest `pause` a client may ask for (seconds); longer is "
                             "`policy-violation`", minimum=1)
    polling: int = setting(5, "shortest seconds between two empty requests of a polling "
                           "session (`hold` 0); faster is `policy-violation`", minimum=0)
    max_body_size: int = setting(0, "bytes of one request body, more gets HTTP 413; 0: "
                                 "`limits.max_stanza_size` + 16384", minimum=0)
    max_sessions_per_address: int = setting(
        20, "BOSH sessions from one client address (the forwarded one behind a trusted "
        "proxy); more is `policy-violation`; 0: no limit", minimum=0)
    cors_origins: tuple[str, ...] = setting(
        ("*",), "browser origins allowed to use the endpoint from other sites (CORS), e.g. "
        "`\"https://chat.example.org\"`; `\"*\"`: any (bodies carry no cookies); empty: "
        "none (same-site pages only)")
    secure_from_trusted: bool = setting(
        True, "plain HTTP from loopback or `http.trusted_proxies` counts as encrypted "
        "(unless the proxy says `X-Forwarded-Proto: http`); `false`: only HTTPS on "
        "`http.tls_listen` does. Credentials are accepted only on encrypted sessions")


@dataclass(frozen=True)
class UploadSettings:
    """``[upload]``: HTTP file upload (XEP-0363); domain is None when disabled."""

    domain: str | None = setting("upload.localhost", "the upload service; `\"\"` disables it "
                                 "(it also needs an HTTP listener)")
    max_file_size: int = setting(10485760, "bytes of one file; a larger slot request gets "
                                 "`not-acceptable` + `file-too-large`", minimum=1)
    quota: int = setting(1073741824, "bytes one account may keep stored (open slots count); "
                         "beyond: `resource-constraint`; 0: no quota", minimum=0)
    max_open_slots: int = setting(100, "slots one account may hold that were not uploaded "
                                  "yet", minimum=1)
    allowed_types: tuple[str, ...] = setting(
        (), "content types that may be uploaded (`image/*` allowed); empty: any type")
    slot_lifetime: float = setting(300.0, "seconds a slot's PUT URL stays valid", positive=True)
    expire_after: float = setting(604800.0, "seconds an upload is kept (one week, as "
                                  "Prosody's mod_http_file_share); 0: for ever", minimum=0)
    expire_interval: float = setting(3600.0, "seconds between background sweeps of expired "
                                     "uploads and unused slots", positive=True)


@dataclass(frozen=True)
class LogSettings:
    """``[log]``."""

    level: str = setting("info", "`debug`, `info`, `warn`, `error` or `critical`",
                         choices=LOG_LEVELS, live=True)


@dataclass(frozen=True)
class LimitSettings:
    """``[limits]``: client stream limits; 0 turns a timeout, rate or count limit off."""

    max_stanza_size: int = setting(262144, "bytes in one stanza (or the stream header)",
                                   minimum=4096)
    max_depth: int = setting(64, "element nesting depth", minimum=4)
    max_attributes: int = setting(64, "attributes on one element, namespace declarations "
                                  "included", minimum=8)
    max_elements: int = setting(4096, "elements in one stanza", minimum=16)
    max_auth_attempts: int = setting(5, "failed SASL attempts on one connection", minimum=1)
    negotiation_timeout: float = setting(30.0, "seconds to authenticate and bind", minimum=0)
    idle_timeout: float = setting(300.0, "seconds of silence before the server pings",
                                  minimum=0)
    ping_timeout: float = setting(60.0, "seconds to answer that ping", minimum=0)
    hibernate_after: float = setting(10.0, "seconds of silence after which a client stream "
                                     "between stanzas gives back its XML parser's memory "
                                     "(about 11 KiB; remade when data comes)", minimum=0)
    tcp_keepalive: int = setting(300, "seconds of silence before TCP keepalive probes a "
                                 "client socket (then every 60 s, 4 times)", minimum=0)
    max_connections_per_ip: int = setting(20, "open client connections from one address",
                                          minimum=0)
    max_sessions_per_account: int = setting(10, "bound resources of one account", minimum=0)
    max_subscription_nick: int = setting(
        1024, "bytes of the nick (XEP-0172) in a subscription request; a longer one is "
        "dropped, the request delivered without it", minimum=16)
    read_rate: int = setting(65536, "bytes a second one connection may send", minimum=0)
    read_burst: int = setting(262144, "bytes it may send at once", minimum=1)
    auth_backoff_after: int = setting(3, "failed logins (per account and per address) before "
                                      "back-off", minimum=1)
    auth_backoff: float = setting(2.0, "first back-off in seconds, doubling per failure",
                                  minimum=0.001)
    auth_backoff_max: float = setting(300.0, "the longest back-off", minimum=0.001)


@dataclass(frozen=True)
class ModulesSettings:
    """``[modules]``: switching feature modules off."""

    disabled: tuple[str, ...] = setting(
        (), "modules to switch off by name; MUC modules as `muc.NAME`")


@dataclass(frozen=True)
class S2SSettings:
    """``[s2s]``: federation with other servers (RFC 6120 S2S, XEP-0220 dialback)."""

    enabled: bool = setting(True, "federate with other servers; `false`: stanzas for other "
                            "domains get `remote-server-not-found`")
    listen: str = setting("tcp:5269", "listener for other servers; `\"\"` turns incoming "
                          "connections off")
    direct_tls_listen: str = setting("", "direct TLS listener for other servers (XEP-0368: "
                                     "TLS from the first byte, ALPN `xmpp-server`), e.g. "
                                     "`\"tcp:5270\"`; `\"\"`: none")
    routes: dict[str, str] = setting({}, "static routes: remote domain -> Twisted client "
                                     "endpoint (`\"tcp:host=10.0.0.2:port=5269\"`), used "
                                     "instead of DNS")
    require_encryption: bool = setting(True, "STARTTLS is required both ways (except for "
                                       "`insecure_domains`)")
    allow_dialback: bool = setting(True, "authenticate servers by Server Dialback (XEP-0220) "
                                   "when their certificate does not verify")
    secret: str = setting("", "the dialback key secret; `\"\"`: a random one generated once "
                          "and kept in `data_dir/s2s_secret`")
    trusted_domains: tuple[str, ...] = setting(
        (), "remote domains that must present a valid certificate (no dialback)")
    insecure_domains: tuple[str, ...] = setting(
        (), "remote domains for which TLS is optional")
    ca_file: str = setting("", "PEM file of the certificate authorities to trust for remote "
                           "certificates; `\"\"`: the system's bundle")
    connect_timeout: float = setting(30.0, "seconds to connect to and authenticate with a remote "
                                     "server; then its queued stanzas bounce with "
                                     "`remote-server-timeout`", positive=True)
    idle_timeout: float = setting(600.0, "seconds an S2S connection may stay unused before it "
                                  "is closed; 0: never", minimum=0)
    max_queue: int = setting(1000, "stanzas queued for one remote domain while its connection "
                             "is set up; more bounce with `resource-constraint`", minimum=1)
    max_incoming: int = setting(1000, "incoming S2S connections at once", minimum=1)
    max_incoming_per_domain: int = setting(
        16, "incoming S2S connections authenticated for one remote domain at once; one more "
        "gets the stream error `conflict`", minimum=1)
    read_rate: int = setting(1048576, "bytes a second one remote server's connection may "
                             "send (a faster one is read more slowly); 0: no limit", minimum=0)
    read_burst: int = setting(4194304, "bytes it may send at once", minimum=1)
    domain_read_rate: int = setting(2097152, "bytes a second all the authenticated "
                                    "connections of one remote domain may send together (its "
                                    "connections are read more slowly); 0: no limit", minimum=0)
    domain_read_burst: int = setting(8388608, "bytes they may send at once", minimum=1)
    domain_stanza_rate: int = setting(2000, "stanzas a second all the authenticated "
                                      "connections of one remote domain may send together "
                                      "(its connections are read more slowly); 0: no limit",
                                      minimum=0)
    domain_stanza_burst: int = setting(10000, "stanzas they may send at once", minimum=1)


#: The core sections: name -> settings class (module sections are added to these).
CORE_SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "tls": TLSSettings,
    "c2s": C2SSettings,
    "components": ComponentSettings,
    "muc": MUCSettings,
    "pubsub": PubSubSettings,
    "http": HTTPSettings,
    "upload": UploadSettings,
    "metrics": MetricsSettings,
    "websocket": WebSocketSettings,
    "bosh": BoshSettings,
    "log": LogSettings,
    "limits": LimitSettings,
    "modules": ModulesSettings,
    "s2s": S2SSettings,
}
