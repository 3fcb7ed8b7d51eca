"""The real ``twistd -n xmppd`` as a subprocess: readiness, reload, stop, restart, activation."""

import io
import os
import re
import signal
import socket
import sqlite3
import sys
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from tests.support import TWISTD, make_test_certificate, spawn_twistd
from tests.test_plugin import Header
from tests.test_server_e2e import element, login, next_stanza
from tests.test_service import (
    OTHER_DOMAINS,
    fingerprint_of,
    presented_certificate,
    roster_answered,
    write_config,
)
from xmppd import cli
from xmppd.storage.schema import MIGRATIONS

REPO = Path(__file__).resolve().parent.parent
PORTS = re.compile(r"xmppd serving [^(]*\((.*)\)")

#: Sets LISTEN_PID to its own pid (systemd's rule), then becomes twistd.
LAUNCHER = (
    "import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]] + sys.argv[2:])"
)


class NotifySocket:
    """An abstract AF_UNIX datagram socket standing in for systemd's."""

    def __init__(self, testcase):
        self.name = f"xmppd-test-{os.getpid()}-{id(testcase)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        testcase.addCleanup(self.sock.close)

    @property
    def address(self):
        return "@" + self.name

    @defer.inlineCallbacks
    def receive(self, timeout=20.0):
        """The next notification (fails after timeout seconds)."""
        deadline = reactor.seconds() + timeout
        while True:
            try:
                return self.sock.recv(4096).decode()
            except BlockingIOError:
                if reactor.seconds() > deadline:
                    raise AssertionError("no notification arrived") from None
                yield task.deferLater(reactor, 0.02, lambda: None)


def listener_ports(output):
    """{'c2s': port, ...} from the 'xmppd serving ... (c2s on host:port, ...)' line."""
    found = PORTS.search(output)
    return {name: int(port) for name, port in re.findall(r"(\w+) on [\d.]+:(\d+)", found[1])}


class ProcessTests(unittest.TestCase):
    """Operations of the real server process."""

    timeout = 60

    def setUp(self):
        self.folder = Path(self.mktemp()).resolve()
        self.folder.mkdir()
        self.cert, self.key = make_test_certificate(self)
        self.config = self.folder / "xmppd.toml"
        self.notify = NotifySocket(self)

    def write(self, cert=None, key=None, **sections):
        sections.setdefault("c2s", {}).setdefault("direct_tls_listen", "tcp:0:interface=127.0.0.1")
        return write_config(self.config, cert or self.cert, key or self.key, **sections)

    def spawn(self, *args, env=None, launcher=False, child_fds=None):
        argv = ["-n", "--pidfile=", "xmppd", "--config", str(self.config), *args]
        command = None
        if launcher:
            command = [sys.executable, "-c", LAUNCHER, TWISTD, *argv]
        environ = {"NOTIFY_SOCKET": self.notify.address, "JOURNAL_STREAM": None, **(env or {})}
        return spawn_twistd(
            self, argv, cwd=self.folder, env=environ, command=command, child_fds=child_fds
        )

    @defer.inlineCallbacks
    def start(self, *args, **kwargs):
        """Spawn the server and wait for READY=1; returns (process, ports)."""
        process = self.spawn(*args, **kwargs)
        ready = yield self.notify.receive()
        # (stdout is another channel than the notify socket: it may lag behind)
        yield process.wait_for(r"xmppd ready")
        # (the upload domain is served with an HTTP listener only)
        upload = ", upload.localhost" if b"http on" in process.output else ""
        self.assertEqual(ready, "READY=1\nSTATUS=serving localhost, conference.localhost, "
                         "pubsub.localhost" + upload,
                         process.output.decode(errors="replace"))
        return process, listener_ports(process.output.decode())

    @defer.inlineCallbacks
    def stop(self, process):
        """SIGTERM; the exit code (must be 0) after STOPPING=1."""
        os.kill(process.transport.pid, signal.SIGTERM)
        self.assertEqual((yield self.notify.receive()), "STOPPING=1\nSTATUS=shutting down")
        code = yield process.ended
        output = process.output.decode(errors="replace")
        self.assertEqual((code, process.signal), (0, None), output)
        self.assertIn("xmppd stopped", output)
        self.assertNotIn("Traceback", output)
        return output

    @defer.inlineCallbacks
    def adduser(self, name, password="pw"):
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        code = yield cli.run(["-c", str(self.config), "adduser", name, "--password", password])
        self.assertEqual(code, 0)

    @defer.inlineCallbacks
    def test_ready_only_when_serving(self):
        self.write()
        process, ports = yield self.start()
        output = process.output.decode()
        # Everything READY=1 promises was already true when it was sent.
        self.assertLess(output.index("xmppd serving localhost"), output.index("xmppd ready"))
        self.assertLess(output.index("loaded 0 persistent rooms of conference.localhost"),
                        output.index("xmppd ready"))
        self.assertTrue((self.folder / "data" / "xmppd.sqlite").exists())
        client = Header()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", ports["c2s"]), client)
        self.assertIn(b"urn:ietf:params:xml:ns:xmpp-tls", (yield client.got_features))
        client.transport.loseConnection()
        yield self.stop(process)

    @defer.inlineCallbacks
    def test_sighup_applies_config_while_client_stays(self):
        self.write()
        yield self.adduser("romeo", "romeo's secret")
        process, ports = yield self.start()
        server = type("Live", (), {"port": ports["c2s"]})
        romeo = yield login(server, "romeo", password="romeo's secret")
        self.assertEqual((yield presented_certificate(ports["c2s_direct_tls"])),
                         fingerprint_of(self.cert))

        new_cert, new_key = make_test_certificate(self, OTHER_DOMAINS)
        self.write(new_cert, new_key, log={"level": "debug"},
                   c2s={"listen": "tcp:0:interface=127.0.0.2"})
        os.kill(process.transport.pid, signal.SIGHUP)
        self.assertRegex((yield self.notify.receive()), r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
        self.assertTrue((yield self.notify.receive()).startswith("READY=1"))
        yield process.wait_for(r"reload: new TLS certificate")
        output = process.output.decode()
        self.assertIn("reload: log.level: 'info' -> 'debug' (applied)", output)
        self.assertIn("reload: c2s.listen: 'tcp:0:interface=127.0.0.1' -> "
                      "'tcp:0:interface=127.0.0.2' needs a restart; not applied", output)
        self.assertIn("reload: new TLS certificate", output)

        self.assertEqual((yield presented_certificate(ports["c2s_direct_tls"])),
                         fingerprint_of(new_cert))
        self.assertTrue(romeo.connected)
        self.assertEqual((yield roster_answered(romeo, "after-reload")), "result")

        # Debug logging now covers new streams, with the secrets redacted.
        second = yield login(server, "romeo", password="romeo's secret", resource="debugged")
        yield second.disconnect()
        yield process.wait_for(r"debugged")
        output = process.output.decode()
        self.assertRegex(output, r"xmppd\.traffic#debug\] c2s 127\.0\.0\.1:\d+ recv: <auth ")
        self.assertIn(">[redacted]</auth>", output)
        self.assertNotIn("romeo's secret", output)

        # A broken file is refused; the server keeps serving.
        self.config.write_text("[log]\nlevel = 'loud'\n")
        os.kill(process.transport.pid, signal.SIGHUP)
        yield self.notify.receive()
        yield self.notify.receive()
        yield process.wait_for(r"configuration reload rejected")
        self.assertIn("configuration reload rejected, the running configuration stays: "
                      f"{self.config}: log.level: must be one of", process.output.decode())
        self.assertEqual((yield roster_answered(romeo, "after-rejection")), "result")
        yield self.stop(process)

    @defer.inlineCallbacks
    def test_sigterm_sends_system_shutdown_and_exits_0(self):
        self.write()
        yield self.adduser("romeo")
        process, ports = yield self.start()
        romeo = yield login(type("Live", (), {"port": ports["c2s"]}), "romeo")
        started = reactor.seconds()
        yield self.stop(process)
        self.assertLess(reactor.seconds() - started, 15)
        if romeo.connected:
            yield romeo.wait_for_stanza(5)
        self.assertFalse(romeo.connected)
        self.assertIn("system-shutdown", romeo.close_reason)

    @defer.inlineCallbacks
    def test_data_survives_restart(self):
        self.write()
        yield self.adduser("romeo")
        yield self.adduser("juliet")
        process, ports = yield self.start()
        live = type("Live", (), {"port": ports["c2s"]})
        romeo = yield login(live, "romeo")
        romeo.send(element("<iq type='set' id='add'><query xmlns='jabber:iq:roster'>"
                           "<item jid='juliet@localhost' name='Juliet'><group>Capulet</group>"
                           "</item></query></iq>"))
        yield next_stanza(romeo, lambda s: s.getAttribute("id") == "add")
        romeo.send(element("<presence to='balcony@conference.localhost/romeo'>"
                           "<x xmlns='http://jabber.org/protocol/muc'/></presence>"))
        yield next_stanza(romeo, lambda s: s.name == "presence")
        romeo.send(element(
            "<iq type='set' id='cfg' to='balcony@conference.localhost'>"
            "<query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value>"
            "</field><field var='muc#roomconfig_persistentroom'><value>1</value></field>"
            "<field var='muc#roomconfig_roomname'><value>The Balcony</value></field>"
            "</x></query></iq>"))
        reply = yield next_stanza(romeo, lambda s: s.getAttribute("id") == "cfg")
        self.assertEqual(reply["type"], "result")
        # Sent just before the SIGTERM: the shutdown must store it.
        romeo.send(element("<message to='juliet@localhost' type='chat' id='late'>"
                           "<body>parting is such sweet sorrow</body></message>"))
        yield roster_answered(romeo, "sync")
        yield self.stop(process)

        process, ports = yield self.start()
        live = type("Live", (), {"port": ports["c2s"]})
        juliet = yield login(live, "juliet")
        juliet.send(element("<presence/>"))
        message = yield next_stanza(juliet, lambda s: s.name == "message")
        self.assertEqual(str(message.body), "parting is such sweet sorrow")
        romeo = yield login(live, "romeo")
        romeo.send(element("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>"))
        roster = yield next_stanza(romeo, lambda s: s.getAttribute("id") == "r")
        item = next(roster.query.elements())
        self.assertEqual((item["jid"], item["name"], str(item.group)),
                         ("juliet@localhost", "Juliet", "Capulet"))
        romeo.send(element("<iq type='get' id='d' to='conference.localhost'>"
                           "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>"))
        items = yield next_stanza(romeo, lambda s: s.getAttribute("id") == "d")
        rooms = {i["jid"]: i.getAttribute("name") for i in items.query.elements()}
        self.assertEqual(rooms, {"balcony@conference.localhost": "The Balcony"})
        yield self.stop(process)

    @defer.inlineCallbacks
    def test_socket_activation(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        self.write(c2s={"listen": "systemd:domain=INET:index=0", "direct_tls_listen": ""},
                   http={"listen": ""})
        fds = {0: "w", 1: "r", 2: "r", 3: listener.fileno()}
        process, ports = yield self.start(
            launcher=True, child_fds=fds, env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "xmppd.socket"}
        )
        self.assertEqual(ports, {"c2s": port})
        client = Header()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.assertIn(b"urn:ietf:params:xml:ns:xmpp-tls", (yield client.got_features))
        client.transport.loseConnection()
        yield self.stop(process)

    @defer.inlineCallbacks
    def test_socket_activation_without_socket_is_one_line(self):
        self.write(c2s={"listen": "systemd:domain=INET:index=0", "direct_tls_listen": ""})
        process = self.spawn()
        code = yield process.ended
        output = process.output.decode()
        self.assertEqual(code, 1, output)
        self.assertIn("xmppd: error: c2s.listen: 'systemd:domain=INET:index=0': systemd "
                      "passed no such socket", output)
        self.assertNotIn("Traceback", output)

    @defer.inlineCallbacks
    def test_newer_schema_refused_in_one_line(self):
        self.write()
        (self.folder / "data").mkdir()
        database = self.folder / "data" / "xmppd.sqlite"
        connection = sqlite3.connect(database)
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        connection.commit()
        connection.close()
        process = self.spawn()
        code = yield process.ended
        output = process.output.decode()
        self.assertEqual(code, 1, output)
        self.assertIn(
            f"xmppd: error: database {database}: database schema version "
            f"{len(MIGRATIONS) + 1} is newer than this xmppd knows ({len(MIGRATIONS)}); "
            "upgrade xmppd\n", output)
        self.assertNotIn("Traceback", output)

    @defer.inlineCallbacks
    def test_journald_format_and_debug_switch(self):
        self.write()
        log_file = self.folder / "journal.log"
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.addCleanup(os.close, fd)
        status = os.fstat(fd)
        process = self.spawn(
            "--debug", child_fds={0: "w", 1: fd, 2: "r"},
            env={"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"},
        )
        yield self.notify.receive()
        ports = listener_ports(log_file.read_text())
        client = Header()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", ports["c2s"]), client)
        yield client.got_features
        client.transport.loseConnection()
        os.kill(process.transport.pid, signal.SIGTERM)
        self.assertEqual((yield process.ended), 0)
        lines = log_file.read_text().splitlines()
        self.assertIn("<6>xmppd.service: xmppd ready: serving localhost, conference.localhost, "
                      "pubsub.localhost, upload.localhost", lines)
        self.assertTrue(all(re.match(r"<[0-7]>\S+: ", line) for line in lines), lines)
        self.assertFalse([line for line in lines if re.search(r"\d{4}-\d\d-\d\dT", line)])
        traffic = [line for line in lines if line.startswith("<7>xmppd.traffic: c2s 127.0.0.1:")]
        self.assertTrue(any(" recv: <?xml version='1.0'?><stream:stream " in t for t in traffic))
        self.assertTrue(any(" send: " in t and "<stream:features>" in t for t in traffic))
