"""External service discovery (XEP-0215, ``urn:xmpp:extdisco:2``): STUN and TURN for calls.

Clients ask the server which STUN/TURN servers to use for audio and video
(Jingle ICE), and for credentials at them. The services come from the
``[external_services]`` section: ``services`` is a list of tables, each
with a ``type`` (``stun``, ``turn``, ``turns``, ...) and optionally
``transport`` (``udp``/``tcp``), ``host`` and ``port`` (else the section's
defaults), a fixed ``username``/``password``, ``restricted`` (credentials
must be asked for), and ``secret``: ``true`` for the section's ``secret``
or a string of its own. With a secret a TURN service gets short-term
credentials computed as coturn's ``use-auth-secret`` (the TURN REST API)
expects: the username is the expiry time (POSIX seconds, ``ttl`` from now)
followed by ``:`` and the configured username if any, the password the
base64 of HMAC-SHA1(secret, username); such a service is ``restricted``.

* ``<services/>`` (``type`` filters): every service, with credentials.
* ``<credentials><service host type [port]/></credentials>``: the
  restricted services with that host and type (and port, when given);
  ``bad-request`` without a host or type, ``item-not-found`` if none.
* Only the server's own users get an answer (``forbidden`` for anyone
  else, as Prosody does): TURN credentials are a relay's bandwidth.

The feature is in the server's disco#info once a service is configured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.words.xish import domish

from xmppd.config import setting
from xmppd.errors import StanzaError
from xmppd.module import IQRequest, Module, Scope, iq_handler

NS_EXTDISCO = "urn:xmpp:extdisco:2"

#: Keys a service table may have, and the TOML types of their values.
SERVICE_KEYS: dict[str, tuple[type, ...]] = {
    "type": (str,), "transport": (str,), "host": (str,), "port": (int,),
    "username": (str,), "password": (str,), "restricted": (bool,), "secret": (bool, str),
    "name": (str,),
}
#: Service types whose credentials a shared secret computes (TURN REST API).
SECRET_TYPES = frozenset({"turn", "turns"})


@dataclass(frozen=True)
class ExternalServicesSettings:
    """``[external_services]``: STUN/TURN servers handed to clients (XEP-0215)."""

    host: str = setting("", "services' default host; empty: the server's domain", live=True)
    port: int = setting(3478, "services' default port", minimum=1, live=True)
    secret: str = setting(
        "", "TURN REST API shared secret (coturn's `static-auth-secret`) for services with "
        "`secret = true`", live=True)
    ttl: int = setting(86400, "seconds computed TURN credentials stay valid", minimum=1,
                       live=True)
    services: tuple[dict[str, Any], ...] = setting(
        (), "the services: tables with `type` and optionally `transport`, `host`, `port`, "
        "`username`, `password`, `restricted`, `secret`", live=True)

    def check(self) -> tuple[str, str] | None:
        """(key, message) for the first malformed service table, else None."""
        for number, service in enumerate(self.services, 1):
            where = f"services: service {number}"
            for key, value in service.items():
                kinds = SERVICE_KEYS.get(key)
                if kinds is None:
                    return "services", f"{where} has an unknown key {key!r}"
                if not isinstance(value, kinds) or (
                        bool not in kinds and isinstance(value, bool)):
                    return "services", f"{where}: {key} has the wrong type"
            if not service.get("type"):
                return "services", f"{where} needs a type (stun, turn, ...)"
            port = service.get("port")
            if port is not None and not 0 < port < 65536:
                return "services", f"{where}: port must be 1-65535"
            if service.get("secret") is True and not self.secret:
                return "services", f"{where} uses the default secret, but secret is empty"
            if service.get("secret") and service["type"] not in SECRET_TYPES:
                return "services", f"{where}: a secret only computes TURN credentials"
        return None


def turn_credentials(secret: str, expires: int, username: str | None = None) -> tuple[str, str]:
    """(username, password) for a TURN server sharing ``secret`` (TURN REST API)."""
    user = f"{expires}:{username}" if username else str(expires)
    digest = hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()
    return user, base64.b64encode(digest).decode()


class ExternalServices(Module):
    """Answers XEP-0215 service and credential requests from local users."""

    name = "external_services"
    settings = ExternalServicesSettings

    def disco_features(self, scope: Scope, target: Any = None) -> list[str]:
        """The feature, in the server's disco#info, once there is a service to hand out."""
        return [NS_EXTDISCO] if scope is Scope.SERVER and self.config.services else []

    def services(self) -> list[dict[str, Any]]:
        """The configured services as handed out now (defaults and credentials filled in)."""
        config = self.config
        now = int(self.server.reactor.seconds())
        found = []
        for item in config.services:
            service = {
                "type": item["type"],
                "transport": item.get("transport"),
                "host": item.get("host") or config.host or self.server.domain,
                "port": item.get("port", config.port),
                "username": item.get("username"),
                "password": item.get("password"),
                "name": item.get("name"),
                "restricted": bool(item.get("restricted")) or "password" in item,
                "expires": None,
            }
            secret = item.get("secret")
            if secret is True:
                secret = config.secret
            if secret:
                expires = now + config.ttl
                service["username"], service["password"] = turn_credentials(
                    secret, expires, item.get("username"))
                service["expires"] = expires
                service["restricted"] = True
            found.append(service)
        return found

    def _local_only(self, request: IQRequest) -> None:
        sender = request.sender
        if sender.user is None or sender.host != self.server.domain:
            raise StanzaError("forbidden", "external services are for this server's users")

    @iq_handler("get", NS_EXTDISCO, "services", Scope.SERVER)
    def get_services(self, request: IQRequest) -> domish.Element:
        """Every service (of the requested ``type``), with credentials."""
        self._local_only(request)
        wanted = request.payload.getAttribute("type")
        services = [s for s in self.services() if wanted is None or s["type"] == wanted]
        answer = _services_element("services", services)
        if wanted is not None:
            answer["type"] = wanted
        return answer

    @iq_handler("get", NS_EXTDISCO, "credentials", Scope.SERVER)
    def get_credentials(self, request: IQRequest) -> domish.Element:
        """Credentials at the restricted services named by host and type (and port)."""
        self._local_only(request)
        wanted = []
        for child in request.payload.elements():
            if child.name != "service":
                continue
            host, kind = child.getAttribute("host"), child.getAttribute("type")
            if not host or not kind:
                raise StanzaError("bad-request", "a service needs its host and type")
            port = child.getAttribute("port")
            if port is not None and not port.isdigit():
                raise StanzaError("bad-request", "the port must be a number")
            wanted.append((kind, host, int(port) if port is not None else None))
        if not wanted:
            raise StanzaError("bad-request", "name the service: <service host=… type=…/>")
        found = [s for s in self.services() if s["restricted"] and any(
            s["type"] == kind and s["host"] == host and port in (None, s["port"])
            for kind, host, port in wanted)]
        if not found:
            raise StanzaError("item-not-found", "no such service with credentials")
        return _services_element("credentials", found)


def _services_element(name: str, services: list[dict[str, Any]]) -> domish.Element:
    element = domish.Element((NS_EXTDISCO, name))
    for service in services:
        child = element.addElement("service")
        child["type"] = service["type"]
        child["host"] = service["host"]
        child["port"] = str(service["port"])
        for key in ("transport", "username", "password", "name"):
            if service[key] is not None:
                child[key] = service[key]
        if service["expires"] is not None:
            child["expires"] = datetime.fromtimestamp(service["expires"], UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        if service["restricted"]:
            child["restricted"] = "1"
    return element
