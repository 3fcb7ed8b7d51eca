"""Fakes and helpers for the c2s stream tests."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import scramp
from twisted.internet import address, defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.words.protocols.jabber import error, jid
from twisted.words.xish import domish

import xmppd  # noqa: F401  (compat shim first)
from xmppd.auth import make_portal
from xmppd.c2s.factory import C2SFactory
from xmppd.config import Config, LimitSettings, config_from_dict
from xmppd.sm.session import Session
from xmppd.storage.accounts import (
    AccountExists,
    InvalidPassword,
    ScramKeys,
    derive_keys,
    password_matches,
    prepare_username,
)

DOMAIN = "example.org"

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_REGISTER = "jabber:iq:register"
NS_ROSTER_VERSIONING = "urn:xmpp:features:rosterver"

_KEY_CACHE: dict[str, dict[str, ScramKeys]] = {}


def keys_for(password: str) -> dict[str, ScramKeys]:
    """SCRAM keys for a password (cached: key derivation is slow)."""
    if password not in _KEY_CACHE:
        _KEY_CACHE[password] = derive_keys(password, iterations=4096)
    return _KEY_CACHE[password]


class FakeAccounts:
    """An in-memory account store with synchronous Deferreds."""

    def __init__(self, users: dict[str, str] | None = None):
        self.keys: dict[str, dict[str, ScramKeys]] = {}
        self.lookups: list[tuple[str, str]] = []
        for username, password in (users or {}).items():
            self.keys[username] = keys_for(password)

    def scram_keys(self, username: str, mechanism: str) -> defer.Deferred:
        self.lookups.append((username, mechanism))
        return defer.succeed(self.keys.get(username, {}).get(mechanism))

    def exists(self, username: str) -> defer.Deferred:
        return defer.succeed(username in self.keys)

    def check_password(self, username: str, password: str) -> defer.Deferred:
        keys = self.keys.get(username)
        if keys is None:
            return defer.succeed(False)
        return defer.succeed(password_matches(password, "SCRAM-SHA-256", keys["SCRAM-SHA-256"]))

    def create(self, username: str, password: str) -> defer.Deferred:
        try:
            username = prepare_username(username)
            if not password:
                raise InvalidPassword("empty password")
            if username in self.keys:
                raise AccountExists(username)
        except Exception:
            return defer.fail()
        self.keys[username] = keys_for(password)
        return defer.succeed(None)


class FakeRouter:
    """Records routed stanzas."""

    def __init__(self):
        self.routed: list[domish.Element] = []

    def route(self, stanza: domish.Element) -> None:
        self.routed.append(stanza)


class FakeSessionManager:
    """Records bind/unbind; closes the older session on a resource conflict."""

    def __init__(self, domain: str = DOMAIN):
        self.domain = domain
        self.router = FakeRouter()
        self.sessions: dict[str, Any] = {}
        self.bound: list[tuple[Any, str, str | None]] = []
        #: The connections whose sessions were unbound.
        self.unbound: list[Any] = []
        #: Whether each unbind was for a connection that went away unclosed.
        self.interrupted: list[bool] = []
        self.sleeping = False
        self.counter = 0
        self.fail_with: Exception | None = None
        self.pending: defer.Deferred | None = None
        self.make_pending = False
        #: (session, element) of every nonza handed to the one fake handler.
        self.nonzas: list[tuple[Any, domish.Element]] = []

    def stream_features(self) -> list[tuple[str, str]]:
        """The real session manager's post-authentication features (roster versioning)."""
        return [(NS_ROSTER_VERSIONING, "ver")]

    def let_idle(self, session: Session) -> bool:
        """Whether a silent client is left alone (set ``sleeping`` to say so)."""
        return self.sleeping

    def nonza_handler(self, namespace: str | None, name: str, before_bind: bool = False):
        """A handler for ``<nonza xmlns='urn:example:nonza'/>`` only (records it)."""
        if (namespace, name) != ("urn:example:nonza", "nonza") or before_bind:
            return None
        return lambda session, element: self.nonzas.append((session, element))

    def bind(self, session: Any, username: str, resource: str | None):
        self.bound.append((session, username, resource))
        if self.fail_with is not None:
            raise self.fail_with
        if resource is None:
            self.counter += 1
            resource = f"gen{self.counter}"
        full = jid.JID(tuple=(username, self.domain, resource))
        old = self.sessions.get(full.full())
        if old is not None:
            old.close("conflict")
        bound = Session(self, full, session)
        self.sessions[full.full()] = bound
        if self.make_pending:
            self.pending = defer.Deferred()
            self.pending.addCallback(lambda _: bound)
            return self.pending
        return bound

    def from_client(self, session: Session, stanza: Any) -> None:
        """Route a stanza a client sent (the real SM tracks directed presence first)."""
        self.router.route(stanza)

    def deliver(self, session: Session, stanza: Any) -> None:
        """Write a stanza to a session (the real SM runs the delivery hooks first)."""
        session.write(stanza)

    def unbind(self, session: Session, interrupted: bool = False) -> None:
        self.unbound.append(session.connection)
        self.interrupted.append(interrupted)
        for key, value in list(self.sessions.items()):
            if value is session:
                del self.sessions[key]


class TLSStringTransport(StringTransport):
    """A StringTransport that records startTLS."""

    def __init__(self, peer_host: str = "192.0.2.1", peer_port: int = 54321):
        super().__init__(peerAddress=address.IPv4Address("TCP", peer_host, peer_port))
        self.tls_started_with: Any = None
        self.aborted = False

    def startTLS(self, options: Any) -> None:
        self.tls_started_with = options

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


TLS_OPTIONS = object()  # stands in for CertificateOptions in unit tests


def factory_config(overrides: dict[str, Any]) -> Config:
    """A Config from make_factory's keyword arguments; config keys are taken out.

    ``domain`` (server.domain), ``require_encryption`` (c2s),
    ``registration_enabled`` (registration.enabled) and every ``[limits]``
    key; the rest stays in ``overrides`` for the factory itself.
    """
    data: dict[str, dict[str, Any]] = {
        "server": {"domain": overrides.pop("domain", DOMAIN)},
        "c2s": {"require_encryption": overrides.pop("require_encryption", False)},
        "registration": {"enabled": overrides.pop("registration_enabled", False)},
        "limits": {},
    }
    for key in LimitSettings.__dataclass_fields__:
        if key in overrides:
            data["limits"][key] = overrides.pop(key)
    return config_from_dict(data, Path("."))


def make_factory(**overrides: Any) -> C2SFactory:
    """A factory over fakes; keyword arguments override the defaults."""
    accounts = overrides.pop("accounts", None) or FakeAccounts({"alice": "secret"})
    sm = overrides.pop("session_manager", None) or FakeSessionManager()
    config = factory_config(overrides)
    settings: dict[str, Any] = dict(
        session_manager=sm,
        accounts=accounts,
        portal=make_portal(accounts),
        tls_options=TLS_OPTIONS,
        reactor=MemoryReactorClock(),
    )
    settings.update(overrides)
    return C2SFactory(config, **settings)


class ServerOutput:
    """Parses what the server wrote into a list of events.

    Events: ("header", root element), elements (domish.Element), ("end",).
    A new header (after a stream restart) starts a new parser.
    """

    def __init__(self):
        self.parser = None
        self.events: list[Any] = []

    def feed(self, data: bytes) -> list[Any]:
        self.events = []
        while data:
            if data.startswith(b"<?xml"):
                self.parser = domish.elementStream()
                self.parser.DocumentStartEvent = lambda root: self.events.append(("header", root))
                self.parser.ElementEvent = lambda element: self.events.append(element)
                self.parser.DocumentEndEvent = lambda: self.events.append(("end",))
                rest = data.find(b"<?xml", 5)
            else:
                rest = data.find(b"<?xml")
            chunk, data = (data, b"") if rest == -1 else (data[:rest], data[rest:])
            self.parser.parse(chunk)
        return self.events


class Client:
    """Drives one protocol instance over a TLSStringTransport."""

    def __init__(self, factory: C2SFactory, peer_host: str = "192.0.2.1"):
        self.factory = factory
        self.proto = factory.buildProtocol(None)
        self.transport = TLSStringTransport(peer_host)
        self.proto.makeConnection(self.transport)
        self.output = ServerOutput()

    def send(self, data: str | bytes) -> list[Any]:
        """Feed bytes to the server; return the events it wrote."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.proto.dataReceived(data)
        return self.read()

    def read(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return self.output.feed(data) if data else []

    def header(self, to: str = DOMAIN, extra: str = "", version: str = "1.0") -> list[Any]:
        version_attr = f" version='{version}'" if version is not None else ""
        to_attr = f" to='{to}'" if to is not None else ""
        return self.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAMS}'{to_attr}{version_attr}{extra}>"
        )

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.proto.connectionLost(Failure(ConnectionDone()))

    # -- negotiation shortcuts -------------------------------------------------

    def auth_plain(self, username: str = "alice", password: str = "secret") -> list[Any]:
        payload = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        return self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")

    def scram(
        self,
        mechanism: str = "SCRAM-SHA-256",
        username: str = "alice",
        password: str = "secret",
    ) -> list[Any]:
        """Run a whole SCRAM exchange; return the events after client-final."""
        client = scramp.ScramClient([mechanism], username, password)
        first = b64(client.get_client_first())
        events = self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>")
        challenge = events[-1]
        assert challenge.name == "challenge", challenge.toXml()
        client.set_server_first(base64.b64decode(str(challenge)).decode())
        final = b64(client.get_client_final())
        events = self.send(f"<response xmlns='{NS_SASL}'>{final}</response>")
        if events and getattr(events[0], "name", None) == "success":
            client.set_server_final(base64.b64decode(str(events[0])).decode())
        return events

    def login(self, resource: str | None = "res") -> str:
        """Header, PLAIN, restart, bind: return the bound full JID."""
        self.header()
        events = self.auth_plain()
        assert events[0].name == "success", events[0].toXml()
        self.header()
        resource_xml = f"<resource>{resource}</resource>" if resource else ""
        events = self.send(
            f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'>{resource_xml}</bind></iq>"
        )
        assert events[0].getAttribute("type") == "result", events[0].toXml()
        return str(events[0].bind.jid)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def stream_error_condition(events: list[Any]) -> str | None:
    """The condition of the stream error among the events, if any."""
    for event in events:
        if isinstance(event, domish.Element) and event.uri == NS_STREAMS and event.name == "error":
            for child in event.elements():
                if child.uri == NS_STREAM_ERRORS and child.name != "text":
                    return child.name
    return None


def stanza_error_condition(element: domish.Element) -> str | None:
    """The condition of a stanza error element, if any."""
    try:
        return error.exceptionFromStanza(element).condition
    except Exception:
        return None


def sasl_failure_condition(element: domish.Element) -> str | None:
    if element.uri != NS_SASL or element.name != "failure":
        return None
    for child in element.elements():
        if child.name != "text":
            return child.name
    return None
