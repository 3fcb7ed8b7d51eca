"""conf/: the systemd unit files and their keys."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

REPO = Path(__file__).resolve().parent.parent


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
        self.assertEqual(unit["Socket"]["ListenStream"], ["5222", "5223", "127.0.0.1:5280"])
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
