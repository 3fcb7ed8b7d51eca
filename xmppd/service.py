"""The server as a Twisted service: storage, router, listeners, SM and MUC.

:class:`XMPPServer` does its fallible start-up work synchronously in
``privilegedStartService`` (database migrations, the certificate, binding the
listening ports) so that a server that cannot start says why in one line and
exits non-zero, before it pretends to be running. ``startService`` then starts
the session manager and the MUC service.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from xmppd import logs, tls
from xmppd.auth import make_portal
from xmppd.config import Config
from xmppd.logs import logger
from xmppd.router import Router
from xmppd.storage.accounts import AccountStore
from xmppd.storage.database import Database, migrate_file

log = logger(__name__)


class StartupError(Exception):
    """The server cannot start; str() is a one-line reason for the operator."""


class XMPPServer(service.MultiService):
    """The whole XMPP server built from a :class:`~xmppd.config.Config`."""

    def __init__(self, config: Config, reactor: Any = None):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        logs.set_level(config.log_level)
        self.router = Router()
        self.database: Database | None = None
        self.accounts: AccountStore | None = None
        self.session_manager = None
        self.muc = None
        self.ports: dict[str, Any] = {}
        self._built = False
        #: Under twistd a StartupError becomes a one-line message and exit 1.
        self.exit_on_startup_error = False

    # -- start-up -----------------------------------------------------

    def privilegedStartService(self) -> None:
        """Open storage, load TLS, bind the listening ports (may raise StartupError)."""
        try:
            if not self._built:
                self._build()
            self._listen()
        except StartupError as e:
            if self.exit_on_startup_error:
                log.critical("cannot start: {reason}", reason=str(e))
                raise SystemExit(f"xmppd: error: {e}") from None
            raise
        super().privilegedStartService()

    def startService(self) -> None:
        """Start the session manager and MUC service (binding first if needed)."""
        if not self._built or not self.ports:
            self.privilegedStartService()
        super().startService()
        log.info(
            "xmppd serving {domains} ({listeners})",
            domains=", ".join(self.config.served_domains),
            listeners=", ".join(f"{name} on {self.describe_port(name)}" for name in self.ports),
        )

    def _build(self) -> None:
        config = self.config
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StartupError(
                f"server.data_dir: cannot create {config.data_dir}: {e.strerror}"
            ) from None
        try:
            migrate_file(config.database_path)
        except (sqlite3.Error, OSError) as e:
            raise StartupError(f"database {config.database_path}: {e}") from None
        self.database = Database(config.database_path, reactor=self.reactor)
        self.accounts = AccountStore(self.database)
        self.tls_options = self._load_tls()
        self._build_session_manager()
        self._build_muc()
        self._built = True

    def _load_tls(self):
        config = self.config
        cert, key = config.tls.certificate, config.tls.key
        if cert is None:
            cert = config.data_dir / f"{config.domain}.crt"
            key = config.data_dir / f"{config.domain}.key"
            if tls.ensure_certificate(cert, key, list(config.served_domains)):
                log.warn(
                    "generated a self-signed certificate for {domains} at {cert} "
                    "(key: {key}); clients will not trust it: configure tls.certificate "
                    "and tls.key for production",
                    domains=", ".join(config.served_domains),
                    cert=cert,
                    key=key,
                )
        try:
            options = tls.server_tls_options(cert, key)
            missing = tls.certificate_mismatches(cert, config.served_domains)
        except tls.CertificateProblem as e:
            raise StartupError(f"tls: {e}") from None
        if missing:
            log.warn(
                "the certificate {cert} is not valid for {missing}: clients that check "
                "certificates will refuse to connect",
                cert=cert,
                missing=", ".join(missing),
            )
        return options

    def _build_session_manager(self) -> None:
        from xmppd.sm.manager import SessionManager
        from xmppd.storage.offline import OfflineStore
        from xmppd.storage.roster import RosterStore

        self.roster = RosterStore(self.database)
        self.offline = OfflineStore(self.database)
        self.session_manager = SessionManager(
            domain=self.config.domain,
            router=self.router,
            accounts=self.accounts,
            roster=self.roster,
            offline=self.offline,
            registration_enabled=self.config.registration_enabled,
            reactor=self.reactor,
        )
        self.session_manager.setServiceParent(self)

    def _build_muc(self) -> None:
        if not self.config.muc.domain:
            return
        from xmppd.muc.service import MUCService

        self.muc = MUCService(
            router=self.router,
            domain=self.config.muc.domain,
            server_domain=self.config.domain,
            database=self.database,
            create_rooms=self.config.muc.create_rooms,
            admins=self.config.admins,
            reactor=self.reactor,
        )
        self.muc.setServiceParent(self)

    def _factories(self) -> dict[str, tuple[str, Any]]:
        from xmppd.c2s.stream import C2SFactory
        from xmppd.components import ComponentServerFactory

        config = self.config
        portal = make_portal(self.accounts)
        factories: dict[str, tuple[str, Any]] = {}

        def c2s(direct_tls: bool) -> Any:
            return C2SFactory(
                domain=config.domain,
                session_manager=self.session_manager,
                router=self.router,
                accounts=self.accounts,
                portal=portal,
                tls_options=self.tls_options,
                require_encryption=config.c2s.require_encryption,
                direct_tls=direct_tls,
                registration_enabled=config.registration_enabled,
                reactor=self.reactor,
            )

        factories["c2s"] = (config.c2s.listen, c2s(False))
        if config.c2s.direct_tls_listen:
            factories["c2s_direct_tls"] = (config.c2s.direct_tls_listen, c2s(True))
        if config.components.listen and config.components.secrets:
            factories["components"] = (
                config.components.listen,
                ComponentServerFactory(self.router, config.components.secrets),
            )
        return factories

    def _listen(self) -> None:
        if self.ports:
            return
        keys = {"c2s": "c2s.listen", "c2s_direct_tls": "c2s.direct_tls_listen",
                "components": "components.listen"}
        for name, (description, factory) in self._factories().items():
            outcome: list[Any] = []
            endpoint = endpoints.serverFromString(self.reactor, description)
            d: Deferred = endpoint.listen(factory)
            d.addBoth(outcome.append)
            if not outcome:
                raise StartupError(f"{keys[name]}: {description!r} did not bind at start-up")
            if isinstance(outcome[0], Failure):
                self._stop_listening()
                raise StartupError(
                    f"{keys[name]}: cannot listen on {description!r}: "
                    f"{outcome[0].getErrorMessage()}"
                )
            self.ports[name] = outcome[0]

    def describe_port(self, name: str) -> str:
        """Where a listener is bound, e.g. '0.0.0.0:5222'."""
        address = self.ports[name].getHost()
        host = getattr(address, "host", "?")
        return f"{host}:{getattr(address, 'port', '?')}"

    def port_number(self, name: str = "c2s") -> int:
        """The TCP port a listener is bound to (tests listen on port 0)."""
        return self.ports[name].getHost().port

    # -- shut-down ----------------------------------------------------

    def _stop_listening(self) -> list[Deferred]:
        waits = [port.stopListening() for port in self.ports.values()]
        self.ports = {}
        return [d for d in waits if d is not None]

    def stopService(self) -> Deferred:
        """Stop listening, stop the SM and MUC, then close the database."""
        from twisted.internet import defer

        if not self.running:
            return defer.succeed(None)
        waits = self._stop_listening()
        d = defer.DeferredList(waits)
        d.addCallback(lambda _: super(XMPPServer, self).stopService())
        if self.database is not None:
            database = self.database
            d.addBoth(lambda result: (database.close(), result)[1])
        return d


def make_service(config: Config) -> XMPPServer:
    """The service twistd runs for a configuration."""
    server = XMPPServer(config)
    server.exit_on_startup_error = True
    return server
