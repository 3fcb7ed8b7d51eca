"""xmppd.service: the server as a service: reload, shutdown, readiness, traffic log, schema."""

import json
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from twisted.internet import defer, protocol, reactor, ssl, task
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer

from tests.support import make_test_certificate, start_server
from tests.test_server_e2e import element, login, next_stanza
from xmppd import logs
from xmppd.config import load_config
from xmppd.service import StartupError, XMPPServer
from xmppd.storage.database import SchemaTooNewError, migrate_file
from xmppd.storage.schema import MIGRATIONS

OTHER_DOMAINS = ("localhost", "conference.localhost", "other.localhost")


def toml_value(value):
    """A Python value as TOML (strings, booleans, numbers, lists of strings, flat tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())
        return "{ " + pairs + " }"
    raise TypeError(value)


def write_config(path, cert, key, **sections):
    """A config file for a loopback test server; keyword arguments override sections."""
    data = {
        "tls": {"certificate": str(cert), "key": str(key)},
        "c2s": {"listen": "tcp:0:interface=127.0.0.1", "direct_tls_listen": "",
                "require_encryption": True},
        "components": {"listen": ""},
        "http": {"listen": "tcp:0:interface=127.0.0.1"},
        "s2s": {"listen": ""},
        "log": {"level": "info"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    text = "".join(
        f"[{section}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
        for section, values in data.items()
    )
    Path(path).write_text(text)
    return Path(path)


@implementer(IHandshakeListener)
class CertificateGrabber(protocol.Protocol):
    """Completes a TLS handshake and reports the server certificate's SHA-256."""

    def __init__(self):
        self.fingerprint = defer.Deferred()

    def handshakeCompleted(self):  # noqa: N802 (Twisted API)
        certificate = self.transport.getPeerCertificate().to_cryptography()
        self.fingerprint.callback(certificate.fingerprint(hashes.SHA256()).hex())
        self.transport.loseConnection()

    def connectionLost(self, reason):  # noqa: N802 (Twisted API)
        if not self.fingerprint.called:
            self.fingerprint.errback(reason)


@defer.inlineCallbacks
def presented_certificate(port):
    """The SHA-256 fingerprint of the certificate a direct TLS port presents now."""
    grabber = CertificateGrabber()
    endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, ssl.CertificateOptions())
    yield connectProtocol(endpoint, grabber)
    fingerprint = yield grabber.fingerprint
    return fingerprint


def fingerprint_of(cert_path):
    from xmppd import tls

    return tls.load_certificate_chain(cert_path)[0].fingerprint(hashes.SHA256()).hex()


@defer.inlineCallbacks
def roster_answered(client, iq_id):
    """The client is still served: a roster get is answered."""
    client.send(element(f"<iq type='get' id='{iq_id}'><query xmlns='jabber:iq:roster'/></iq>"))
    reply = yield next_stanza(client, lambda s: s.name == "iq" and s.getAttribute("id") == iq_id)
    return reply["type"]


class LogCapture:
    """Collects xmppd's formatted log messages."""

    def __init__(self, testcase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def messages(self, namespace_prefix="xmppd"):
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events
                if e.get("log_namespace", "").startswith(namespace_prefix)]


class ReloadTests(unittest.TestCase):
    """XMPPServer.reload(): what a SIGHUP does, checked in-process."""

    timeout = 30

    def setUp(self):
        self.addCleanup(logs.set_level, logs.current_level())
        self.folder = Path(self.mktemp()).resolve()
        self.folder.mkdir()
        self.cert, self.key = make_test_certificate(self)
        self.path = self.folder / "xmppd.toml"

    def start(self, **sections):
        write_config(self.path, self.cert, self.key, **sections)
        return start_server(self, load_config(self.path))

    @defer.inlineCallbacks
    def test_live_settings_applied_and_client_stays(self):
        live = self.start(c2s={"direct_tls_listen": "tcp:0:interface=127.0.0.1"})
        server = live.server
        yield live.create_user("romeo", "pw")
        romeo = yield login(live, "romeo")
        before = yield presented_certificate(live.port_of("c2s_direct_tls"))
        self.assertEqual(before, fingerprint_of(self.cert))

        new_cert, new_key = make_test_certificate(self, OTHER_DOMAINS)
        write_config(
            self.path, new_cert, new_key,
            c2s={"direct_tls_listen": "tcp:0:interface=127.0.0.1"},
            log={"level": "debug"}, registration={"enabled": True},
            muc={"create_rooms": "admins"}, server={"admins": ["boss@localhost"]},
        )
        captured = LogCapture(self)
        result = server.reload()

        self.assertIsNone(result.rejected)
        self.assertTrue(result.new_certificate)
        self.assertEqual(result.needs_restart, [])
        self.assertIn("log.level: 'info' -> 'debug'", result.applied)
        self.assertIn("registration.enabled: False -> True", result.applied)
        self.assertEqual(logs.current_level(), "debug")
        self.assertTrue(server.session_manager.modules['register'].config.enabled)
        self.assertTrue(all(f.registration_enabled for f in server.client_factories()))
        self.assertEqual(server.muc.create_rooms, "admins")
        self.assertEqual(server.muc.admins, frozenset({"boss@localhost"}))
        self.assertEqual(server.config.log_level, "debug")
        self.assertTrue(any("new TLS certificate" in m for m in captured.messages()))

        after = yield presented_certificate(live.port_of("c2s_direct_tls"))
        self.assertEqual(after, fingerprint_of(new_cert))
        self.assertNotEqual(after, before)
        self.assertTrue(romeo.connected)
        self.assertEqual((yield roster_answered(romeo, "r1")), "result")
        yield romeo.disconnect()

    def test_restart_settings_reported_not_applied(self):
        live = self.start()
        server = live.server
        port = live.port
        write_config(self.path, self.cert, self.key,
                     c2s={"listen": "tcp:0:interface=127.0.0.2"},
                     server={"domain": "example.org", "data_dir": "elsewhere"},
                     muc={"domain": "rooms.example.org"})
        captured = LogCapture(self)
        result = server.reload()
        self.assertIsNone(result.rejected)
        self.assertEqual(result.applied, [])
        keys = sorted(line.split(":")[0] for line in result.needs_restart)
        self.assertEqual(keys, ["c2s.listen", "muc.domain", "server.data_dir", "server.domain"])
        self.assertEqual(server.config.domain, "localhost")
        self.assertEqual(server.config.c2s.listen, "tcp:0:interface=127.0.0.1")
        self.assertEqual(live.port, port)
        self.assertTrue(any("server.domain: 'localhost' -> 'example.org' needs a restart"
                            in m for m in captured.messages()))
        # The TLS files did not change: no certificate news.
        self.assertFalse(result.new_certificate)
        # The certificate still covers the running domains (the merged config is checked).
        self.assertFalse(any("not valid for" in m for m in captured.messages()))

    def test_module_settings_and_key_names(self):
        """A module's live section is applied; a restart key is named as in the file."""
        live = self.start()
        server = live.server
        write_config(self.path, self.cert, self.key,
                     contact_info={"abuse": ["mailto:abuse@localhost"]},
                     server={"shutdown_timeout": 3})
        result = server.reload()
        self.assertIsNone(result.rejected)
        self.assertEqual(result.applied, ["contact_info.abuse: [] -> [mailto:abuse@localhost]"])
        self.assertEqual(result.needs_restart, ["server.shutdown_timeout: 15.0 -> 3.0"])
        module = server.session_manager.modules["contact_info"]
        self.assertEqual(module.config.abuse, ("mailto:abuse@localhost",))
        self.assertEqual(server.config.shutdown_timeout, 15.0)

    @defer.inlineCallbacks
    def test_rejected_file_keeps_the_running_config(self):
        live = self.start()
        server = live.server
        yield live.create_user("romeo", "pw")
        romeo = yield login(live, "romeo")
        running = server.config
        options = server.tls_options

        self.path.write_text("[log]\nlevel = 'loud'\n")
        captured = LogCapture(self)
        result = server.reload()
        self.assertEqual(result.rejected, f"{self.path}: log.level: must be one of "
                                          "debug, info, warn, error, critical")
        self.assertIs(server.config, running)
        self.assertTrue(any("configuration reload rejected, the running configuration stays"
                            in m for m in captured.messages()))

        # A certificate that does not belong to its key is rejected as a whole.
        other_cert, _ = make_test_certificate(self, OTHER_DOMAINS)
        write_config(self.path, other_cert, self.key, log={"level": "debug"})
        result = server.reload()
        self.assertIn("does not belong to", result.rejected)
        self.assertIs(server.config, running)
        self.assertIs(server.tls_options, options)
        self.assertEqual(logs.current_level(), "info")

        self.path.write_text("this is [not toml")
        self.assertIn("invalid TOML", server.reload().rejected)

        self.assertEqual((yield roster_answered(romeo, "r2")), "result")
        yield romeo.disconnect()

    def test_unchanged(self):
        live = self.start()
        captured = LogCapture(self)
        result = live.server.reload()
        self.assertEqual((result.rejected, result.applied, result.needs_restart,
                          result.new_certificate), (None, [], [], False))
        self.assertIn("reload: the configuration is unchanged", captured.messages())

    def test_force_debug_survives_reload(self):
        write_config(self.path, self.cert, self.key)
        server = XMPPServer(load_config(self.path), force_debug=True)
        self.assertEqual(logs.current_level(), "debug")
        server.privilegedStartService()
        server.startService()
        self.addCleanup(server.stopService)
        server.reload()
        self.assertEqual(logs.current_level(), "debug")


class ShutdownTests(unittest.TestCase):
    """stopService: system-shutdown for every client, pending work flushed."""

    timeout = 30

    @defer.inlineCallbacks
    def test_clients_get_system_shutdown_and_offline_messages_are_kept(self):
        live = start_server(self, c2s={"require_encryption": True})
        yield live.create_user("romeo", "pw")
        yield live.create_user("juliet", "pw")
        romeo = yield login(live, "romeo")
        other = yield login(live, "romeo", resource="second")
        # Storing the offline message takes a while: the shutdown must wait for it.
        offline = live.server.session_manager.modules['offline'].store
        store = offline.store
        arrived = defer.Deferred()

        def slow_store(*args):
            arrived.callback(None)
            return task.deferLater(reactor, 0.3, store, *args)

        offline.store = slow_store
        romeo.send(element("<message to='juliet@localhost' type='chat' id='m1'>"
                           "<body>before the shutdown</body></message>"))
        yield arrived
        yield live.server.stopService()
        for client in (romeo, other):
            if client.connected:
                yield client.wait_for_stanza(5)
            self.assertFalse(client.connected)
            self.assertIn("system-shutdown", client.close_reason)
        self.assertEqual(live.server.ports, {})

        database = sqlite3.connect(live.config.database_path)
        self.addCleanup(database.close)
        stored = database.execute("SELECT username, stanza FROM offline_messages").fetchall()
        self.assertEqual(len(stored), 1)
        self.assertEqual(stored[0][0], "juliet")
        self.assertIn("before the shutdown", stored[0][1])

    @defer.inlineCallbacks
    def test_bounded_when_a_step_hangs(self):
        live = start_server(self)
        server = live.server
        server.shutdown_timeout = 0.2
        hang = defer.Deferred()
        server.session_manager.wait_idle = lambda: hang
        captured = LogCapture(self)
        yield server.stopService()
        self.assertTrue(server.database._closed)
        self.assertTrue(any("shutdown did not finish within 0.2 s" in m
                            for m in captured.messages()))
        hang.callback(None)

    @defer.inlineCallbacks
    def test_stop_twice_is_one_stop(self):
        live = start_server(self)
        first = live.server.stopService()
        second = live.server.stopService()
        self.assertIs(first, second)
        yield first


class ReadinessTests(unittest.TestCase):
    """XMPPServer.ready fires once storage answers and the rooms are loaded."""

    @defer.inlineCallbacks
    def test_ready_after_rooms_loaded(self):
        live = start_server(self)
        yield live.server.ready
        self.assertTrue(live.server.muc.ready.called)
        self.assertIn("c2s", live.server.ports)


class TrafficLogTests(unittest.TestCase):
    """At debug level a login's traffic is logged, secrets redacted."""

    timeout = 30

    @defer.inlineCallbacks
    def test_login_traffic_redacted(self):
        self.addCleanup(logs.set_level, logs.current_level())
        live = start_server(self, log={"level": "debug"})
        yield live.create_user("romeo", "correct horse battery")
        captured = LogCapture(self)
        romeo = yield login(live, "romeo", password="correct horse battery")
        romeo.send(element(
            "<presence to='room@conference.localhost/romeo'>"
            "<x xmlns='http://jabber.org/protocol/muc'><password>cellar door</password></x>"
            "</presence>"))
        yield next_stanza(romeo, lambda s: s.name == "presence")
        yield romeo.disconnect()
        lines = captured.messages("xmppd.traffic")
        text = "\n".join(lines)
        self.assertIn(" recv: ", text)
        self.assertIn(" send: ", text)
        self.assertRegex(text, r"<auth [^>]*mechanism=.SCRAM-SHA-256.[^>]*>\[redacted\]</auth>")
        self.assertRegex(text, r"<challenge [^>]*>\[redacted\]</challenge>")
        self.assertRegex(text, r"<response [^>]*>\[redacted\]</response>")
        self.assertRegex(text, r"<success [^>]*>\[redacted\]</success>")
        self.assertIn("<password>[redacted]</password>", text)
        self.assertNotIn("cellar door", text)
        self.assertNotIn("correct horse", text)
        self.assertNotIn("n=romeo,r=", text)
        self.assertTrue(all("\n" not in line for line in lines))

    @defer.inlineCallbacks
    def test_nothing_logged_at_info(self):
        live = start_server(self, log={"level": "info"})
        yield live.create_user("romeo", "pw")
        captured = LogCapture(self)
        romeo = yield login(live, "romeo")
        yield romeo.disconnect()
        self.assertEqual(captured.messages("xmppd.traffic"), [])


class SchemaTests(unittest.TestCase):
    """Migrations at start-up: an older database is upgraded, a newer one refused."""

    def database_at(self, version, future=False):
        from tests.support import make_test_config

        config = make_test_config(self)
        config.data_dir.mkdir(parents=True)
        connection = sqlite3.connect(config.database_path)
        for number in range(version):
            connection.executescript(MIGRATIONS[number])
        if future:
            version = len(MIGRATIONS) + 7
        connection.execute(f"PRAGMA user_version = {version}")
        connection.execute("INSERT INTO accounts VALUES ('romeo', 0)")
        connection.commit()
        connection.close()
        return config

    @defer.inlineCallbacks
    def test_older_database_migrated_at_start(self):
        config = self.database_at(1)
        live = start_server(self, config)
        self.assertEqual(migrate_file(config.database_path), len(MIGRATIONS))
        self.assertEqual((yield live.accounts.usernames()), ["romeo"])
        connection = sqlite3.connect(config.database_path)
        self.addCleanup(connection.close)
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        self.assertEqual(version, len(MIGRATIONS))
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        self.assertIn("muc_rooms", tables)

    def test_newer_database_refused_in_one_line(self):
        config = self.database_at(len(MIGRATIONS), future=True)
        server = XMPPServer(config)
        error = self.assertRaises(StartupError, server.privilegedStartService)
        message = str(error)
        self.assertEqual(
            message,
            f"database {config.database_path}: database schema version "
            f"{len(MIGRATIONS) + 7} is newer than this xmppd knows ({len(MIGRATIONS)}); "
            "upgrade xmppd",
        )
        self.assertNotIn("\n", message)
        self.assertRaises(SchemaTooNewError, migrate_file, config.database_path)
        self.assertEqual(server.ports, {})
