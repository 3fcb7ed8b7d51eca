"""The server as a Twisted service: storage, router, listeners, SM and MUC.

:class:`XMPPServer` does its fallible start-up work synchronously in
``privilegedStartService`` (database migrations, the certificate, binding the
listening ports) so that a server that cannot start says why in one line and
exits non-zero, before it pretends to be running. ``startService`` then starts
the session manager and the MUC service.

Operations (under twistd, see :func:`make_service`):

* readiness: :attr:`XMPPServer.ready` fires, and systemd gets ``READY=1``,
  once every listener is bound, the database answers and the MUC rooms are
  loaded;
* ``SIGHUP`` re-reads the configuration file (:meth:`XMPPServer.reload`);
* ``SIGTERM`` shuts down gracefully (every client gets ``system-shutdown``,
  pending work is flushed, the database closed) and the process exits 0:
  xmppd handles SIGTERM itself and stops the reactor, because twistd's own
  handler would make the process re-kill itself with the signal afterwards.
"""

from __future__ import annotations

import signal
import sqlite3
from typing import Any

from cryptography.hazmat.primitives import hashes
from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from xmppd import gcpolicy, listeners, logs, systemd, tls, traffic, transport
from xmppd.auth import make_portal
from xmppd.config import Config
from xmppd.logs import logger
from xmppd.mam.store import sequence_for, stored_floor
from xmppd.reload import ReloadResult, apply_reload
from xmppd.router import Router
from xmppd.storage.accounts import AccountStore
from xmppd.storage.database import Database, migrate_file
from xmppd.web import build_web

log = logger(__name__)


class StartupError(Exception):
    """The server cannot start; str() is a one-line reason for the operator."""


class XMPPServer(service.MultiService):
    """The whole XMPP server built from a :class:`~xmppd.config.Config`.

    ``force_debug`` keeps the log level at debug whatever the file says
    (``twistd xmppd --debug``); ``shutdown_timeout`` bounds how long
    :meth:`stopService` waits for clients and pending writes.
    """

    def __init__(self, config: Config, reactor: Any = None, *, force_debug: bool = False,
                 shutdown_timeout: float | None = None):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.force_debug = force_debug
        self.shutdown_timeout = (
            config.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        logs.set_level("debug" if force_debug else config.log_level)
        self.router = Router()
        self.database: Database | None = None
        self.accounts: AccountStore | None = None
        self.session_manager = None
        self.muc = None
        self.pubsub = None
        #: The HTTP listeners' service (None without HTTP) and the upload service.
        self.http = None
        #: The event-loop lag probe of the metrics (None without them).
        self.metrics_lag = None
        self.upload = None
        #: Federation (None when ``[s2s] enabled`` is false).
        self.s2s = None
        self.tls_paths: tuple[Any, Any] = (None, None)
        #: The WebSocket endpoint's factory and the c2s factory of its streams (or None).
        self.websocket = None
        self.websocket_c2s = None
        #: The BOSH endpoint and the c2s factory of its sessions' streams (or None).
        self.bosh = None
        self.bosh_c2s = None
        self.ports: dict[str, Any] = {}
        #: The listeners' factories by name (they outlive the ports at shut-down).
        self.factories: dict[str, Any] = {}
        self.tls_options: Any = None
        self.tls_fingerprint: str | None = None
        #: The control socket's listening port (None when off or not yet open).
        self.control_port: Any = None
        #: Fires once the server serves: listeners bound, storage open, rooms loaded.
        self.ready: Deferred = Deferred()
        self._built = False
        self._stopping: Deferred | None = None
        self._shutting_down = False
        #: Under twistd a StartupError becomes a one-line message and exit 1.
        self.exit_on_startup_error = False
        #: Under twistd: handle SIGTERM and SIGHUP, tell systemd about our state.
        self.handle_signals = False
        self.notify_systemd = False
        #: A log observer for twistd's application (journald format), or None.
        self.log_observer: Any = None

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
        self._open_control()
        super().privilegedStartService()

    def setServiceParent(self, parent: Any) -> None:
        """Join twistd's application; offer it our log observer if we have one.

        twistd asks the application for an ``ILogObserver`` before it falls
        back to its own (``--logger`` still wins), so under journald the
        journal format is used without any extra option.
        """
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            if parent.getComponent(ILogObserver, None) is None:
                parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def startService(self) -> None:
        """Start the session manager and MUC service (binding first if needed)."""
        if not self._built or not self.ports:
            self.privilegedStartService()
        super().startService()
        self._stopping = None
        log.info(
            "xmppd serving {domains} ({listeners})",
            domains=", ".join(self.config.served_domains),
            listeners=", ".join([f"{name} on {self.describe_port(name)}" for name in self.ports]
                                + ([f"control on {self.config.control_socket}"]
                                   if self.control_port is not None else [])),
        )
        if self.handle_signals:
            self.reactor.callWhenRunning(self._install_signal_handlers)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        waits: list[Deferred] = []
        if self.database is not None:
            waits.append(self.database.query("SELECT 1"))
        if self.muc is not None:
            loaded: Deferred = Deferred()
            self.muc.ready.addBoth(lambda result: (loaded.callback(None), result)[1])
            waits.append(loaded)
        d = defer.gatherResults(waits, consumeErrors=True)
        d.addCallbacks(self._became_ready, self._not_ready)

    def _became_ready(self, _: object) -> None:
        status = "serving " + ", ".join(self.config.served_domains)
        log.info("xmppd ready: {status}", status=status)
        if self.handle_signals:  # a server process (twistd), not a test
            gcpolicy.tune_for_server()
            transport.lean_event_dispatch(self.reactor)
        if self.notify_systemd:
            systemd.ready(status)
        if not self.ready.called:
            self.ready.callback(None)

    def _not_ready(self, reason: Failure) -> None:
        if self._stopping is not None:
            return  # stopped before it was ready (e.g. a short test): nothing to report
        error = reason.value.subFailure if isinstance(reason.value, defer.FirstError) else reason
        log.critical("storage did not open: {error}", error=error.getErrorMessage())
        if self.handle_signals:
            self.reactor.stop()

    # -- signals (under twistd) ------------------------------------------

    def _install_signal_handlers(self) -> None:
        """Replace twistd's SIGTERM handler (so we exit 0) and handle SIGHUP."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGHUP, self._on_sighup)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.shutdown, "SIGTERM")

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def shutdown(self, reason: str = "requested") -> None:
        """Stop the reactor (and so the service, gracefully); twistd then exits 0."""
        if self._shutting_down or not self.running:
            return
        self._shutting_down = True
        log.info("{reason}: shutting down", reason=reason)
        if self.notify_systemd:
            systemd.stopping()
        self.reactor.stop()

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
            floor = stored_floor(config.database_path)
        except (sqlite3.Error, OSError) as e:
            raise StartupError(f"database {config.database_path}: {e}") from None
        self.database = Database(config.database_path, reactor=self.reactor)
        # Archive ids grow with the clock; a clock set back since the last run
        # must not hand out ids (seqs) that are taken already.
        sequence_for(self.database).raise_floor(floor)
        self.accounts = AccountStore(self.database)
        self.tls_options, self.tls_fingerprint = self._load_tls(config)
        self._build_session_manager()
        self._build_muc()
        self._build_pubsub()
        build_web(self)  # HTTP, host-meta, metrics, WebSocket, BOSH, upload
        self._build_s2s()
        self._built = True

    def _load_tls(self, config: Config) -> tuple[Any, str]:
        """TLS options and the certificate's SHA-256 fingerprint (StartupError if unusable)."""
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
            fingerprint = tls.load_certificate_chain(cert)[0].fingerprint(hashes.SHA256()).hex()
        except tls.CertificateProblem as e:
            raise StartupError(f"tls: {e}") from None
        self.tls_paths = (cert, key)
        if missing:
            log.warn(
                "the certificate {cert} is not valid for {missing}: clients that check "
                "certificates will refuse to connect",
                cert=cert,
                missing=", ".join(missing),
            )
        return options, fingerprint

    def _build_session_manager(self) -> None:
        from xmppd.sm.manager import SessionManager

        self.session_manager = SessionManager(
            self.config,
            router=self.router,
            database=self.database,
            accounts=self.accounts,
            reactor=self.reactor,
        )
        self.session_manager.setServiceParent(self)

    def _build_muc(self) -> None:
        if not self.config.muc.domain:
            return
        from xmppd.modules import enabled_muc_modules
        from xmppd.muc.service import MUCService

        self.muc = MUCService(
            self.config.muc,
            router=self.router,
            server_domain=self.config.domain,
            database=self.database,
            admins=self.config.admins,
            reactor=self.reactor,
            modules=enabled_muc_modules(self.config),
        )
        self.muc.setServiceParent(self)

    def _build_pubsub(self) -> None:
        if not self.config.pubsub.domain:
            return
        from xmppd.pubsub.component import PubSubService

        self.pubsub = PubSubService(
            self.config.pubsub,
            router=self.router,
            database=self.database,
            server_domain=self.config.domain,
            admins=self.config.admins,
        )
        self.pubsub.setServiceParent(self)
        from xmppd.module import Point

        self.session_manager.modules.add_hook(Point.ACCOUNT_DELETED, self.pubsub.account_deleted)

    def _build_s2s(self) -> None:
        if not self.config.s2s.enabled:
            return
        from xmppd.s2s.setup import make_s2s_manager

        try:
            self.s2s = make_s2s_manager(self.config, self.router, self.tls_paths, self.reactor)
        except (OSError, tls.CertificateProblem) as e:
            raise StartupError(f"s2s: {e}") from None
        self.s2s.setServiceParent(self)
        self.router.register(None, self.s2s)

    def _factories(self) -> dict[str, tuple[str, Any]]:
        from xmppd.c2s.factory import C2SFactory
        from xmppd.c2s.guard import ClientGuard
        from xmppd.components import ComponentServerFactory

        config = self.config
        portal = make_portal(self.accounts)
        factories: dict[str, tuple[str, Any]] = {}
        # One guard for both client listeners: the per-address, per-account
        # and authentication back-off limits span them.
        guard = ClientGuard.from_limits(self.reactor, config.limits)
        self.c2s_guard = guard

        def c2s(direct_tls: bool) -> Any:
            return C2SFactory(
                config,
                session_manager=self.session_manager,
                router=self.router,
                accounts=self.accounts,
                portal=portal,
                tls_options=self.tls_options,
                direct_tls=direct_tls,
                reactor=self.reactor,
                guard=guard,
            )

        factories["c2s"] = (config.c2s.listen, c2s(False))
        if self.websocket is not None:
            from xmppd.ws.stream import WebSocketC2SFactory

            self.websocket_c2s = WebSocketC2SFactory(
                config, session_manager=self.session_manager, router=self.router,
                accounts=self.accounts, portal=portal, tls_options=None,
                reactor=self.reactor, guard=guard)
            traffic.trace_factory(self.websocket_c2s, kind="ws")
            self.websocket.use(self.websocket_c2s)
        if self.bosh is not None:
            from xmppd.bosh.session import BoshC2SFactory

            self.bosh_c2s = BoshC2SFactory(
                config, session_manager=self.session_manager, router=self.router,
                accounts=self.accounts, portal=portal, tls_options=None,
                reactor=self.reactor, guard=guard)
            traffic.trace_factory(self.bosh_c2s, kind="bosh")
            self.bosh.use(self.bosh_c2s)
        if config.c2s.direct_tls_listen:
            factories["c2s_direct_tls"] = (config.c2s.direct_tls_listen, c2s(True))
        if config.components.listen and config.components.secrets:
            factories["components"] = (
                config.components.listen,
                ComponentServerFactory(self.router, config.components.secrets),
            )
        if self.s2s is not None and config.s2s.listen:
            factories["s2s"] = (config.s2s.listen, self.s2s.factory())
        if self.s2s is not None and config.s2s.direct_tls_listen:
            factories["s2s_direct_tls"] = (config.s2s.direct_tls_listen,
                                           self.s2s.factory(direct_tls=True))
        if self.http is not None:
            if config.http.listen:
                factories["http"] = (config.http.listen, self.http.factory())
            if config.http.tls_listen:
                factories["https"] = (config.http.tls_listen,
                                      self.http.tls_factory(lambda: self.tls_options))
        return factories

    def _listen(self) -> None:
        if self.ports:
            return
        keys = {"c2s": "c2s.listen", "c2s_direct_tls": "c2s.direct_tls_listen",
                "components": "components.listen", "http": "http.listen",
                "https": "http.tls_listen", "s2s": "s2s.listen",
                "s2s_direct_tls": "s2s.direct_tls_listen"}
        for name, (description, factory) in self._factories().items():
            if name.startswith("c2s"):
                traffic.trace_factory(factory)
            self.factories[name] = factory
            outcome: list[Any] = []
            try:
                d: Deferred = listeners.listen(self.reactor, description, factory)
            except (IndexError, KeyError):  # systemd:index=N / name=X not passed to us
                self._stop_listening()
                raise StartupError(
                    f"{keys[name]}: {description!r}: systemd passed no such socket "
                    "(start xmppd through its .socket unit)"
                ) from None
            except Exception as e:
                self._stop_listening()
                raise StartupError(f"{keys[name]}: {description!r}: {e}") from None
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
        if self.http is not None:
            def bound(name: str) -> int | None:
                ports = self.ports.get(name)
                return getattr(ports[0].getHost(), "port", None) if ports else None

            self.http.listening_on(bound("http"), bound("https"))

    def _open_control(self) -> None:
        """Listen on the control socket (``server.control_socket``), if configured.

        A problem with it is logged and the server runs without it: it only
        serves ``xmppdctl``'s questions, never users.
        """
        path = self.config.control_socket
        if path is None or self.control_port is not None:
            return
        from xmppd.control import ControlError, listen_control

        try:
            self.control_port = listen_control(self.reactor, path, self)
        except ControlError as e:
            log.error("server.control_socket: {problem}; running without a control socket "
                      "(xmppdctl s2s will not work)", problem=str(e))

    def describe_port(self, name: str) -> str:
        """Where a listener is bound, e.g. '0.0.0.0:5222, [::]:5222'."""
        return listeners.describe_ports(self.ports[name])

    def port_number(self, name: str = "c2s") -> int:
        """The TCP port a listener is bound to (tests listen on port 0)."""
        return self.ports[name][0].getHost().port

    def client_factories(self) -> list[Any]:
        """The C2S factories (STARTTLS and direct TLS listeners, WebSocket and BOSH streams)."""
        factories = [f for name, f in self.factories.items() if name.startswith("c2s")]
        if self.websocket_c2s is not None:
            factories.append(self.websocket_c2s)
        if self.bosh_c2s is not None:
            factories.append(self.bosh_c2s)
        return factories

    # -- reload ---------------------------------------------------------

    def reload(self) -> ReloadResult:
        """Re-read the configuration file and apply what can change while running.

        Applied: the TLS certificate and key (re-read even when the paths did
        not change, for renewed certificates; new connections use them, S2S
        streams in both directions included), the
        log level, ``muc.create_rooms``, ``server.admins``,
        ``registration.enabled`` and ``c2s.require_encryption`` (for new
        connections). Listen addresses, domains and the data directory need
        a restart: they are reported and not applied. A file that does not
        load, or whose certificate is unusable, is rejected as a whole and
        the running configuration stays. Connected clients are not touched.
        """
        if self.notify_systemd:
            systemd.reloading()
        try:
            return apply_reload(self)
        finally:
            if self.notify_systemd:
                systemd.ready("serving " + ", ".join(self.config.served_domains))

    # -- shut-down ----------------------------------------------------

    def _stop_listening(self) -> list[Deferred]:
        waits = [listeners.stop_listening(ports) for ports in self.ports.values()]
        self.ports = {}
        if self.control_port is not None:  # Twisted removes the socket file
            waits.append(defer.maybeDeferred(self.control_port.stopListening))
            self.control_port = None
        return waits

    def stopService(self) -> Deferred:
        """Shut down gracefully, within ``shutdown_timeout`` seconds.

        Stop listening; close every client stream with ``system-shutdown``;
        wait for the session manager's pending work (offline messages,
        presence) and the MUC service's room writes; stop the children; close
        the database. If that takes too long, the database is closed anyway.
        """
        if self._stopping is not None:
            return self._stopping
        if not self.running:
            return defer.succeed(None)
        log.info("stopping: closing the listeners and the client streams")
        if self.metrics_lag is not None:
            self.metrics_lag.stop()
        d = defer.DeferredList(self._stop_listening())
        d.addCallback(lambda _: self._close_clients())
        d.addCallback(lambda _: self._flush())
        d.addCallback(lambda _: super(XMPPServer, self).stopService())
        d.addErrback(lambda f: log.failure("error while shutting down", f))
        done = self._bounded(d)
        database = self.database
        if database is not None:
            done.addBoth(lambda result: (database.close(), result)[1])
        done.addCallback(lambda _: log.info("xmppd stopped"))
        self._stopping = done
        return done

    def _close_clients(self) -> Deferred:
        """Send every client ``system-shutdown``; fires once their connections are gone."""
        factories = self.client_factories()
        count = sum(len(f.streams) for f in factories)
        if count:
            log.info("closing {count} client streams", count=count)
        for factory in factories:
            factory.close_all("system-shutdown")
        done: Deferred = Deferred()

        def check() -> None:
            if any(f.streams for f in factories):
                self.reactor.callLater(0.02, check)
            else:
                done.callback(None)

        check()
        return done

    def _flush(self) -> Deferred:
        waits = []
        if self.session_manager is not None:
            waits.append(self.session_manager.wait_idle())
        if self.muc is not None:
            waits.append(self.muc.flush())
        return defer.DeferredList(waits)

    def _bounded(self, work: Deferred) -> Deferred:
        """Fires when ``work`` does, or after ``shutdown_timeout`` seconds."""
        done: Deferred = Deferred()

        def expire() -> None:
            log.warn("shutdown did not finish within {timeout} s; closing the database now",
                     timeout=self.shutdown_timeout)
            done.callback(None)

        timer = self.reactor.callLater(self.shutdown_timeout, expire)

        def finished(_: object) -> None:
            if timer.active():
                timer.cancel()
                done.callback(None)

        work.addBoth(finished)
        return done


def make_service(config: Config, debug: bool = False) -> XMPPServer:
    """The service twistd runs for a configuration (``debug``: ``--debug``)."""
    if config.path is not None:  # a reload must find the file whatever the cwd
        config = config.replace(path=config.path.absolute())
    server = XMPPServer(config, force_debug=debug)
    server.exit_on_startup_error = True
    server.handle_signals = True
    server.notify_systemd = True
    if logs.under_journald():
        server.log_observer = logs.journal_observer()
    return server
