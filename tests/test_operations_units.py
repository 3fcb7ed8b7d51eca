"""Operations building blocks: sd_notify, log formats, redaction, reload plans, unit files."""

import configparser
import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.support import make_test_config
from xmppd import logs, systemd, traffic
from xmppd.reload import config_changes, merged_config

REPO = Path(__file__).resolve().parent.parent


class NotifyTests(unittest.TestCase):
    """READY=1 and friends reach a unix datagram socket, abstract or not."""

    def receiver(self, address):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        sock.settimeout(5)
        return sock

    def test_path_socket(self):
        path = Path(self.mktemp()).resolve()
        sock = self.receiver(str(path))
        environ = {"NOTIFY_SOCKET": str(path)}
        self.assertTrue(systemd.ready("serving localhost", environ))
        self.assertEqual(sock.recv(4096), b"READY=1\nSTATUS=serving localhost")
        self.assertTrue(systemd.stopping(environ))
        self.assertEqual(sock.recv(4096), b"STOPPING=1\nSTATUS=shutting down")

    def test_abstract_socket(self):
        name = f"xmppd-test-{os.getpid()}-{id(self)}"
        sock = self.receiver("\0" + name)
        environ = {"NOTIFY_SOCKET": "@" + name}
        self.assertTrue(systemd.reloading(environ))
        message = sock.recv(4096).decode()
        self.assertRegex(message, r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
        self.assertTrue(systemd.ready(environ=environ))
        self.assertEqual(sock.recv(4096), b"READY=1")

    def test_without_socket_nothing_is_sent(self):
        self.assertIsNone(systemd.notify_address({}))
        self.assertFalse(systemd.ready(environ={}))
        self.assertIsNone(systemd.notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}))

    def test_unreachable_socket_is_logged_not_raised(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        missing = str(Path(self.mktemp()).resolve())
        self.assertFalse(systemd.ready(environ={"NOTIFY_SOCKET": missing}))
        self.assertTrue(any("cannot notify systemd" in e.get("log_format", "") for e in events))


class JournalFormatTests(unittest.TestCase):
    """The journald format: priority prefix, namespace, no timestamp, every line."""

    def test_one_line_with_priority(self):
        out = io.StringIO()
        observer = logs.JournalObserver(out)
        observer({"log_format": "hello {who}", "who": "world", "log_level": LogLevel.warn,
                  "log_namespace": "xmppd.example", "log_time": 0})
        self.assertEqual(out.getvalue(), "<4>xmppd.example: hello world\n")

    def test_traceback_lines_all_prefixed(self):
        try:
            raise ValueError("boom")
        except ValueError:
            failure = Failure()
        text = logs.format_journal_event({
            "log_format": "it failed", "log_level": LogLevel.critical,
            "log_namespace": "xmppd.x", "log_failure": failure,
        })
        lines = text.splitlines()
        self.assertEqual(lines[0], "<2>xmppd.x: it failed")
        self.assertGreater(len(lines), 2)
        self.assertTrue(all(line.startswith("<2>xmppd.x: ") for line in lines))
        self.assertIn("ValueError: boom", text)

    def test_under_journald_compares_device_and_inode(self):
        path = Path(self.mktemp())
        with path.open("w") as stream:
            status = os.fstat(stream.fileno())
            self.assertTrue(logs.under_journald(
                {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}, stream))
            self.assertFalse(logs.under_journald(
                {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino + 1}"}, stream))
            self.assertFalse(logs.under_journald({}, stream))
            self.assertFalse(logs.under_journald({"JOURNAL_STREAM": "garbage"}, stream))

    def test_level_switch(self):
        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("warn")
        self.assertEqual(logs.current_level(), "warn")
        self.assertFalse(logs.is_enabled("debug", "xmppd.traffic"))
        self.assertTrue(logs.is_enabled("error"))
        logs.set_level("debug")
        self.assertTrue(logs.is_enabled("debug", "xmppd.traffic"))


def redact(*chunks):
    redactor = traffic.Redactor()
    return "".join(redactor.feed(c.encode() if isinstance(c, str) else c) for c in chunks)


class RedactionTests(unittest.TestCase):
    """Secrets never reach the traffic log, however the bytes are split."""

    HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")

    def test_sasl_payloads(self):
        text = redact(
            self.HEADER,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            "AHJvbWVvAHNlY3JldA==</auth>",
            "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1zZWNyZXQ=</challenge>",
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdz</response>",
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1zaWduYXR1cmU=</success>",
        )
        for secret in ("AHJvbWVvAHNlY3JldA==", "cj1zZWNyZXQ=", "Yz1iaXdz", "dj1zaWduYXR1cmU="):
            self.assertNotIn(secret, text)
        self.assertIn("mechanism='PLAIN'>[redacted]</auth>", text)
        self.assertEqual(text.count("[redacted]"), 4)

    def test_split_anywhere(self):
        stanza = (self.HEADER + "<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
                  "<username>romeo</username><password>hunter2</password></query></iq>"
                  "<message to='a@localhost'><body>hello</body></message>")
        data = stanza.encode()
        for cut in range(1, len(data)):
            text = redact(data[:cut], data[cut:])
            # The traffic went through, the password replaced ...
            self.assertIn("<password>[redacted]", text, cut)
            self.assertIn("<body>hello</body>", text, cut)
            # ... and no part of it is left
            self.assertNotIn("hunter", text, cut)
            self.assertNotIn("ter2", text, cut)
        whole = redact(data)
        self.assertIn("<username>romeo</username><password>[redacted]</password>", whole)
        self.assertIn("<body>hello</body>", whole)

    def test_byte_by_byte(self):
        stanza = (self.HEADER + "<presence to='room@conference.localhost/nick'>"
                  "<x xmlns='http://jabber.org/protocol/muc'><password>s3cr3t-é</password>"
                  "</x></presence>").encode()
        text = redact(*[stanza[i:i + 1] for i in range(len(stanza))])
        self.assertNotIn("s3cr", text)
        self.assertIn("<password>", text)

    def test_room_secret_form_field(self):
        text = redact(
            self.HEADER,
            "<iq type='set'><query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='muc#roomconfig_roomname'><value>Lobby</value></field>"
            "<field var=\"muc#roomconfig_roomsecret\"><value>cellar-door</value></field>"
            "<field var='password'><value>pw-in-form</value></field>"
            "</x></query></iq>",
        )
        self.assertNotIn("cellar-door", text)
        self.assertNotIn("pw-in-form", text)
        self.assertIn("<value>Lobby</value>", text)

    def test_cdata_and_restart(self):
        text = redact(
            self.HEADER,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'><![CDATA[c2VjcmV0]]>",
            "</auth>",
            self.HEADER,  # a restarted stream (after SASL) starts from nothing open
            "<message><body><![CDATA[visible]]></body></message>",
        )
        self.assertNotIn("c2VjcmV0", text)
        self.assertIn("<![CDATA[visible]]>", text)

    def test_quoted_angle_bracket_and_self_closing(self):
        text = redact(self.HEADER, "<password/><message id='a>b'><body>shown</body></message>")
        self.assertIn("<body>shown</body>", text)

    def test_tracer_logs_one_line_and_detaches_above_debug(self):
        class FakeStream:
            rawDataInFn = None
            rawDataOutFn = None

        self.addCleanup(logs.set_level, logs.current_level())
        logs.set_level("debug")
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        stream = FakeStream()
        tracer = traffic.StreamTracer(stream, "127.0.0.1:1234")
        tracer.attach()
        stream.rawDataInFn(b"<message>\n<body>hi</body></message>")
        stream.rawDataOutFn(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>eA==</success>")
        lines = [e for e in events if e.get("log_namespace") == "xmppd.traffic"]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[0]["data"], "<message>\\n<body>hi</body></message>")
        self.assertEqual(lines[0]["direction"], "recv")
        self.assertNotIn("eA==", lines[1]["data"])
        logs.set_level("info")
        stream.rawDataInFn(b"<more/>")
        self.assertIsNone(stream.rawDataInFn)
        self.assertIsNone(stream.rawDataOutFn)


class ReloadPlanTests(unittest.TestCase):
    """Which changed keys a reload applies and which need a restart."""

    def test_changes_and_merge(self):
        old = make_test_config(self)
        new = make_test_config(
            self,
            server={"domain": "example.org", "admins": ["boss@example.org"]},
            log={"level": "debug"},
            muc={"create_rooms": "admins", "domain": "rooms.example.org"},
            registration={"enabled": True},
            c2s={"listen": "tcp:5999"},
            components={"secrets": {"gw.example.org": "very secret"}},
        )
        changes = {c.key: c for c in config_changes(old, new)}
        live = sorted(k for k, c in changes.items() if c.live)
        # (each test config has its own copy of the certificate: tls.* differ too)
        self.assertEqual(live, ["log.level", "muc.create_rooms", "registration.enabled",
                                "server.admins", "tls.certificate", "tls.key"])
        self.assertIn("server.domain", changes)
        self.assertIn("c2s.listen", changes)
        self.assertIn("muc.domain", changes)
        self.assertIn("server.data_dir", changes)  # a different temp folder
        self.assertFalse(changes["server.domain"].live)
        self.assertEqual(changes["log.level"].describe(), "log.level: 'warn' -> 'debug'")
        self.assertEqual(changes["components.secrets"].describe(), "components.secrets: changed")
        self.assertNotIn("very secret", changes["components.secrets"].describe())

        merged = merged_config(old, list(changes.values()), Path("/x.toml"))
        self.assertEqual(merged.log_level, "debug")
        self.assertEqual(merged.muc.create_rooms, "admins")
        self.assertEqual(merged.admins, ("boss@example.org",))
        self.assertTrue(merged.registration_enabled)
        self.assertEqual(merged.domain, old.domain)
        self.assertEqual(merged.c2s.listen, old.c2s.listen)
        self.assertEqual(merged.muc.domain, old.muc.domain)
        self.assertEqual(merged.data_dir, old.data_dir)
        self.assertEqual(merged.path, Path("/x.toml"))
        # What was not applied is reported again next time.
        again = {c.key for c in config_changes(merged, new) if not c.live}
        self.assertIn("server.domain", again)
        self.assertFalse([c for c in config_changes(merged, new) if c.live])

    def test_no_changes(self):
        config = make_test_config(self)
        self.assertEqual(config_changes(config, config), [])


# The keys the unit files may use, per section (a typo must fail the test
# even where systemd-analyze is not installed).
UNIT_KEYS = {
    "Unit": {"Description", "After", "Wants", "Requires", "Documentation"},
    "Service": {
        "Type", "NotifyAccess", "ExecStart", "ExecReload", "KillSignal", "TimeoutStartSec",
        "TimeoutStopSec", "Restart", "RestartSec", "User", "Group", "StateDirectory",
        "StateDirectoryMode", "ConfigurationDirectory", "ConfigurationDirectoryMode",
        "WorkingDirectory", "UMask", "LimitNOFILE", "Environment", "CapabilityBoundingSet",
        "AmbientCapabilities", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
        "PrivateDevices", "DevicePolicy", "ProtectKernelTunables", "ProtectKernelModules",
        "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
        "ProtectProc", "ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces",
        "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "RemoveIPC",
        "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
    },
    "Socket": {"ListenStream", "BindIPv6Only", "Service", "FileDescriptorName"},
    "Install": {"WantedBy"},
}


def read_unit(path):
    """A unit file as {section: {key: [values]}}."""
    sections = {}
    current = None
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise AssertionError(f"{path}:{number}: not a key=value line: {raw!r}")
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


class UnitFileTests(unittest.TestCase):
    """conf/xmppd.service and conf/xmppd.socket: the keys we rely on, and systemd's opinion."""

    def test_service_keys(self):
        unit = read_unit(REPO / "conf" / "xmppd.service")
        for section, keys in unit.items():
            self.assertIn(section, UNIT_KEYS)
            self.assertEqual(set(keys) - UNIT_KEYS[section], set(), section)
        service = {k: v[-1] for k, v in unit["Service"].items()}
        self.assertEqual(service["Type"], "notify")
        self.assertEqual(service["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertRegex(service["ExecStart"], r"twistd --nodaemon --pidfile= xmppd --config \S+")
        self.assertEqual(service["User"], "xmppd")
        self.assertEqual(service["StateDirectory"], "xmppd")
        self.assertEqual(service["ConfigurationDirectory"], "xmppd")
        for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                    "RestrictNamespaces", "LockPersonality"):
            self.assertEqual(service[key], "yes", key)
        self.assertEqual(service["ProtectSystem"], "strict")
        self.assertEqual(set(service["RestrictAddressFamilies"].split()),
                         {"AF_UNIX", "AF_INET", "AF_INET6"})
        # Default ports are above 1024: no capability at all.
        self.assertEqual(service["CapabilityBoundingSet"], "")
        self.assertEqual(service["AmbientCapabilities"], "")
        self.assertEqual(unit["Install"]["WantedBy"], ["multi-user.target"])

    def test_socket_keys(self):
        unit = read_unit(REPO / "conf" / "xmppd.socket")
        for section, keys in unit.items():
            self.assertEqual(set(keys) - UNIT_KEYS[section], set(), section)
        self.assertEqual(unit["Socket"]["ListenStream"], ["5222", "5223"])
        self.assertEqual(unit["Socket"]["Service"], ["xmppd.service"])

    def test_sysusers_snippet(self):
        lines = [line for line in (REPO / "conf" / "xmppd.sysusers").read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r'^u xmppd - "[^"]+" /var/lib/xmppd$')

    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if tool is None:
            raise unittest.SkipTest(
                "systemd-analyze is not installed (apt-get install systemd); "
                "the unit keys are still checked by test_service_keys"
            )
        folder = Path(self.mktemp())
        folder.mkdir()
        # verify insists that ExecStart= exists: point it at this Python's twistd.
        bindir = str(Path(sys.executable).parent) + "/"
        service = (REPO / "conf" / "xmppd.service").read_text().replace("/opt/xmppd/bin/", bindir)
        if not Path(bindir, "twistd").exists():
            service = service.replace(bindir + "twistd", shutil.which("true") or "/bin/true")
        (folder / "xmppd.service").write_text(service)
        shutil.copy(REPO / "conf" / "xmppd.socket", folder / "xmppd.socket")
        result = subprocess.run(
            [tool, "verify", str(folder / "xmppd.service"), str(folder / "xmppd.socket")],
            capture_output=True, text=True, timeout=60,
        )
        complaints = [line for line in (result.stdout + result.stderr).splitlines()
                      if str(folder) in line]
        self.assertEqual((result.returncode, complaints), (0, []), result.stderr)


class ParserSanityTests(unittest.TestCase):
    """read_unit catches broken lines (so the key checks above can fail)."""

    def test_bad_line(self):
        path = Path(self.mktemp())
        path.write_text("[Service]\nType notify\n")
        self.assertRaises(AssertionError, read_unit, path)

    def test_configparser_agrees_on_sections(self):
        parser = configparser.RawConfigParser(strict=False)
        parser.optionxform = str
        parser.read_string((REPO / "conf" / "xmppd.socket").read_text())
        self.assertEqual(parser.sections(), ["Unit", "Socket", "Install"])
