"""xmppd.control: the control socket, its AMP commands, and ``xmppdctl s2s``.

The commands are checked over an in-memory AMP connection (``iosim``), the
socket over real UNIX sockets in a short temporary folder (a test's own
folder may be too long a path for one), and ``xmppdctl s2s`` against two
live federated servers.
"""

import errno
import io
import json
import os
import socket
import stat
import sys

from twisted.internet import defer, endpoints, error, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.test import iosim
from twisted.trial import unittest

from tests.support import make_test_config, short_folder, start_server
from tests.test_s2s_e2e import TwoServers, domain_config
from tests.test_server_e2e import element, next_stanza
from xmppd import cli, control
from xmppd.control import ControlError, ControlLocator, S2SConnections, listen_control
from xmppd.s2s.status import S2SConnection

ROWS = [
    S2SConnection("out", "a.example", ("b.example",), True, "TLSv1.3", "dialback", 125.0, 3, 7),
    S2SConnection("in", "a.example", ("b.example", "c.example"), True, "TLSv1.2",
                  "SASL EXTERNAL", 4000.0, 12, 0),
    S2SConnection("in", "conference.a.example", (), False, "", "none", 2.5, 0, 0),
]



class FakeS2S:
    """An S2S manager's ``connections()``, counting the calls."""

    def __init__(self, rows):
        self.rows = list(rows)
        self.calls = 0

    def connections(self):
        """The rows."""
        self.calls += 1
        return self.rows


class FakeServer:
    """What the locator needs of the server: its S2S manager (or None)."""

    def __init__(self, rows=ROWS, enabled=True):
        self.s2s = FakeS2S(rows) if enabled else None


def as_dict(row, omitted=0):
    """A row as the command answers it."""
    return {"direction": row.direction, "local": row.local, "remote": list(row.remote),
            "remote_omitted": omitted, "tls": row.tls, "tls_version": row.tls_version,
            "auth": row.auth, "connected": row.connected, "stanzas_in": row.stanzas_in,
            "stanzas_out": row.stanzas_out}


class CommandTests(unittest.TestCase):
    """The AMP commands over an in-memory connection."""

    def call(self, server, **arguments):
        client, _, pump = iosim.connectedServerAndClient(
            lambda: amp.AMP(locator=ControlLocator(server)), amp.AMP)
        d = client.callRemote(S2SConnections, **arguments)
        pump.flush()
        return self.successResultOf(d)

    def test_connections(self):
        answer = self.call(FakeServer(), offset=0)
        self.assertEqual(answer, {"enabled": True, "total": 3,
                                  "connections": [as_dict(r) for r in ROWS]})

    def test_offset(self):
        answer = self.call(FakeServer(), offset=2)
        self.assertEqual((answer["total"], answer["connections"]), (3, [as_dict(ROWS[2])]))
        self.assertEqual(self.call(FakeServer(), offset=9)["connections"], [])

    def test_federation_off(self):
        self.assertEqual(self.call(FakeServer(enabled=False), offset=0),
                         {"enabled": False, "total": 0, "connections": []})

    def test_big_answers_are_paged(self):
        """Rows that would not fit in one AMP value (64 KiB) come in several pages."""
        domains = tuple(f"{n:03d}." + "x" * 200 + ".example" for n in range(60))
        rows = [S2SConnection("in", "a.example", domains[:30], True, "TLSv1.3", "dialback",
                              1.0, 0, 0) for _ in range(20)]
        first = self.call(FakeServer(rows), offset=0)
        self.assertEqual(first["total"], 20)
        self.assertLess(len(first["connections"]), 20)
        self.assertGreater(len(first["connections"]), 1)
        got = list(first["connections"])
        while len(got) < 20:
            got += self.call(FakeServer(rows), offset=len(got))["connections"]
        self.assertEqual(got, [as_dict(r) for r in rows])

    def test_a_row_with_too_many_domains_is_cut(self):
        domains = tuple(f"{n:03d}." + "x" * 200 + ".example" for n in range(300))
        row = S2SConnection("in", "a.example", domains, True, "TLSv1.3", "dialback", 1.0, 0, 0)
        [got] = self.call(FakeServer([row]), offset=0)["connections"]
        kept = len(got["remote"])
        self.assertLess(kept, 300)
        self.assertEqual(got["remote"], list(domains[:kept]))
        self.assertEqual(got["remote_omitted"], 300 - kept)


class FormatTests(unittest.TestCase):
    """``xmppdctl s2s``'s table."""

    def test_table(self):
        rows = [as_dict(r) for r in ROWS]
        rows[1]["remote_omitted"] = 4
        self.assertEqual(control.s2s_lines(rows), [
            "DIR  LOCAL                 REMOTE                  TLS            AUTH           "
            "CONNECTED  IN  OUT",
            "out  a.example             b.example               yes (TLSv1.3)  dialback       "
            "2m05s      3   7",
            "in   a.example             b.example,c.example,+4  yes (TLSv1.2)  SASL EXTERNAL  "
            "1h06m      12  0",
            "in   conference.a.example  ?                       no             none           "
            "2s         0   0",
        ])

    def test_durations(self):
        self.assertEqual([control.duration(s) for s in (0, 59.9, 60, 3599, 3600, 86399,
                                                         86400 * 3 + 7200)],
                         ["0s", "59s", "1m00s", "59m59s", "1h00m", "23h59m", "3d02h"])


class SocketTests(unittest.TestCase):
    """The control socket itself: mode, stale files, errors, removal."""

    def setUp(self):
        self.folder = short_folder(self)
        self.path = self.folder / "control.sock"

    def listen(self, server=None):
        port = listen_control(reactor, self.path, server or FakeServer())
        self.addCleanup(lambda: port.connected and port.stopListening())
        return port

    @defer.inlineCallbacks
    def test_mode_answers_and_removal(self):
        port = self.listen()
        mode = os.stat(self.path).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        enabled, rows = yield control.s2s_connections(reactor, self.path)
        self.assertEqual((enabled, rows), (True, [as_dict(r) for r in ROWS]))
        yield port.stopListening()
        self.assertFalse(self.path.exists())

    @defer.inlineCallbacks
    def test_client_fetches_every_page(self):
        server = FakeServer()
        self.listen(server)
        self.patch(control, "PAGE_BUDGET", 1)  # one row a page
        enabled, rows = yield control.s2s_connections(reactor, self.path)
        self.assertEqual(rows, [as_dict(r) for r in ROWS])
        self.assertEqual(server.s2s.calls, 3)

    def test_permissions_keep_other_users_out(self):
        """Another user cannot connect (checked in a child process that gives up root)."""
        self.listen()
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to act as another user")
        os.chmod(self.folder, 0o755)  # the folder is no obstacle: the socket's mode is
        pid = os.fork()
        if pid == 0:  # the child: no reactor, no trial, just the system call
            code = 3
            try:
                os.setgid(65534)
                os.setuid(65534)
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                probe.connect(str(self.path))
                code = 0
            except PermissionError:
                code = 1
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 1)

    @defer.inlineCallbacks
    def test_a_stale_socket_is_replaced(self):
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(self.path))
        stale.close()  # the file stays, nobody listens: what a crash leaves
        with self.assertRaises(ControlError) as raised:
            yield control.s2s_connections(reactor, self.path)
        self.assertEqual(str(raised.exception),
                         f"xmppd is not running (nothing answers on {self.path})")
        self.listen()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        enabled, rows = yield control.s2s_connections(reactor, self.path)
        self.assertEqual(len(rows), 3)

    def test_a_live_socket_is_not_taken_over(self):
        self.listen()
        with self.assertRaises(ControlError) as raised:
            listen_control(reactor, self.path, FakeServer())
        self.assertEqual(str(raised.exception),
                         f"{self.path} is in use: another xmppd is running with this data_dir")
        self.assertTrue(self.path.exists())

    def test_not_a_socket(self):
        self.path.write_text("precious")
        with self.assertRaises(ControlError) as raised:
            listen_control(reactor, self.path, FakeServer())
        self.assertEqual(str(raised.exception), f"{self.path} exists and is not a socket")
        self.assertEqual(self.path.read_text(), "precious")
        d = control.s2s_connections(reactor, self.path)
        self.assertIn("is not a socket", str(self.failureResultOf(d, ControlError).value))

    def test_path_too_long(self):
        path = self.folder / ("x" * 120)
        with self.assertRaises(ControlError) as raised:
            listen_control(reactor, path, FakeServer())
        self.assertIn("longer than 107 bytes", str(raised.exception))
        d = control.s2s_connections(reactor, path)
        self.assertIn("set server.control_socket to a shorter one",
                      str(self.failureResultOf(d, ControlError).value))

    def test_missing_folder(self):
        with self.assertRaises(ControlError) as raised:
            listen_control(reactor, self.folder / "nowhere" / "c.sock", FakeServer())
        self.assertTrue(str(raised.exception).startswith("cannot listen on"))

    def test_not_running(self):
        d = control.s2s_connections(reactor, self.path)
        self.assertEqual(str(self.failureResultOf(d, ControlError).value),
                         f"xmppd is not running (no control socket at {self.path})")

    def test_permission_denied_message(self):
        """EACCES from connect (another user's 0600 socket) is one line."""
        self.listen()

        def refuse(endpoint, factory):
            return defer.fail(error.getConnectError((errno.EACCES, "Permission denied")))

        self.patch(endpoints.UNIXClientEndpoint, "connect", refuse)
        d = control.s2s_connections(reactor, self.path)
        self.assertEqual(str(self.failureResultOf(d, ControlError).value),
                         f"permission denied on {self.path}: run xmppdctl as the server's user")

    def test_server_that_does_not_answer(self):
        """A server that accepts but never answers: a timeout, not a hang."""
        clock = MemoryReactorClock()
        self.listen()

        class Silent(amp.AMP):
            """Accepts commands, answers none."""

            def callRemote(self, command, **kw):
                return defer.Deferred()

        proto = Silent()
        proto.makeConnection(iosim.FakeTransport(proto, isServer=False))
        self.patch(endpoints, "connectProtocol", lambda endpoint, p: defer.succeed(proto))
        d = control.s2s_connections(clock, self.path, timeout=5)
        clock.advance(5)
        self.assertEqual(str(self.failureResultOf(d, ControlError).value),
                         f"xmppd did not answer on {self.path} within 5 s")


class CommandLineTests(unittest.TestCase):
    """``xmppdctl s2s``: output, ``--json``, errors (exit 1, one line, no traceback)."""

    def setUp(self):
        self.folder = short_folder(self)
        self.socket = self.folder / "c.sock"
        self.config = self.folder / "xmppd.toml"
        self.write_config(str(self.socket))

    def write_config(self, control_socket):
        self.config.write_text(f'[server]\ndata_dir = "{self.folder}/data"\n'
                               f'control_socket = "{control_socket}"\n')

    @defer.inlineCallbacks
    def run_cli(self, *args):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = yield cli.run(["-c", str(self.config), *args], reactor)
        return code, out.getvalue(), err.getvalue()

    def listen(self, server):
        port = listen_control(reactor, self.socket, server)
        self.addCleanup(port.stopListening)

    @defer.inlineCallbacks
    def test_table_and_json(self):
        self.listen(FakeServer())
        code, out, err = yield self.run_cli("s2s")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.splitlines(), control.s2s_lines([as_dict(r) for r in ROWS]))
        code, out, err = yield self.run_cli("s2s", "--json")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out), [as_dict(r) for r in ROWS])

    @defer.inlineCallbacks
    def test_nothing_to_list(self):
        self.listen(FakeServer(rows=[]))
        self.assertEqual((yield self.run_cli("s2s")), (0, "no S2S connections\n", ""))

    @defer.inlineCallbacks
    def test_federation_off(self):
        self.listen(FakeServer(enabled=False))
        self.assertEqual((yield self.run_cli("s2s")),
                         (0, "federation is off (s2s.enabled = false)\n", ""))

    @defer.inlineCallbacks
    def test_not_running(self):
        self.assertEqual((yield self.run_cli("s2s")), (
            1, "", f"xmppdctl: error: xmppd is not running (no control socket at "
                   f"{self.socket})\n"))

    @defer.inlineCallbacks
    def test_control_socket_off(self):
        self.write_config("")
        self.assertEqual((yield self.run_cli("s2s")), (
            1, "", 'xmppdctl: error: the control socket is off (server.control_socket is "")\n'))

    @defer.inlineCallbacks
    def test_relative_path_is_in_data_dir(self):
        self.write_config("relative.sock")
        code, _, err = yield self.run_cli("s2s")
        self.assertEqual((code, err), (1, "xmppdctl: error: xmppd is not running (no control "
                                          f"socket at {self.folder}/data/relative.sock)\n"))


class ServerSocketTests(unittest.TestCase):
    """The running server's control socket: created 0600, stale one replaced, removed."""

    def config(self, control_socket):
        return make_test_config(self, server={"control_socket": str(control_socket)})

    @defer.inlineCallbacks
    def test_lifecycle(self):
        path = short_folder(self) / "control.sock"
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()
        live = start_server(self, self.config(path))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        enabled, rows = yield control.s2s_connections(reactor, path)
        self.assertEqual((enabled, rows), (False, []))  # federation is off in tests
        yield live.server.stopService()
        self.assertFalse(path.exists())

    def test_a_problem_is_logged_and_the_server_serves(self):
        from tests.test_service import LogCapture

        path = short_folder(self) / ("x" * 120)
        captured = LogCapture(self)
        live = start_server(self, self.config(path))
        self.assertIsNone(live.server.control_port)
        self.assertTrue(live.port)
        self.assertTrue(any("running without a control socket" in m
                            for m in captured.messages()))


class FederationTests(TwoServers):
    """``xmppdctl s2s`` against two live federated servers."""

    def config_for(self, domain, address, **s2s):
        config = domain_config(self, domain, address, **s2s)
        folder = short_folder(self)
        path = folder / "control.sock"
        # xmppdctl reads the same file the server would: data_dir and the socket.
        (folder / "xmppd.toml").write_text(
            f'[server]\ndomain = "{domain}"\ndata_dir = "{config.data_dir}"\n'
            f'control_socket = "{path}"\n')
        self.config_files = getattr(self, "config_files", {})
        self.config_files[domain] = folder / "xmppd.toml"
        return config.replace(server=config.server.__class__(
            domain=domain, data_dir=str(config.data_dir), control_socket=str(path)))

    @defer.inlineCallbacks
    def xmppdctl(self, domain, *args):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = yield cli.run(["-c", str(self.config_files[domain]), "s2s", *args], reactor)
        self.assertEqual((code, err.getvalue()), (0, ""))
        return out.getvalue()

    @defer.inlineCallbacks
    def test_lists_both_directions_with_dialback(self):
        self.assertEqual((yield self.xmppdctl("a.example")), "no S2S connections\n")
        self.alice.send(element("<message to='bob@b.example' type='chat' id='m1'>"
                                "<body>hello</body></message>"))
        yield next_stanza(self.bob, lambda s: s.name == "message")
        self.bob.send(element("<message to='alice@a.example/res' type='chat' id='m2'>"
                              "<body>hi</body></message>"))
        yield next_stanza(self.alice, lambda s: s.name == "message")

        listing = (yield self.xmppdctl("a.example")).splitlines()
        self.assertEqual(listing[0].split(),
                         ["DIR", "LOCAL", "REMOTE", "TLS", "AUTH", "CONNECTED", "IN", "OUT"])
        self.assertEqual(len(listing), 3, listing)
        # Outgoing first (alice's message), then b.example's connection (bob's answer).
        for line, direction in zip(listing[1:], ("out", "in"), strict=True):
            cells = line.split()
            self.assertEqual(cells[:4], [direction, "a.example", "b.example", "yes"], line)
            self.assertRegex(cells[4], r"^\(TLSv1\.[23]\)$")
            self.assertEqual(cells[5], "dialback", line)
            self.assertRegex(cells[6], r"^\d+s$")
        out_cells, in_cells = listing[1].split(), listing[2].split()
        self.assertEqual((out_cells[-1], in_cells[-2]), ("1", "1"))  # a message each way

        answer = json.loads((yield self.xmppdctl("b.example", "--json")))
        self.assertEqual([(r["direction"], r["local"], r["remote"], r["tls"], r["auth"],
                           r["stanzas_in"], r["stanzas_out"]) for r in answer],
                         [("out", "b.example", ["a.example"], True, "dialback", 0, 1),
                          ("in", "b.example", ["a.example"], True, "dialback", 1, 0)])
        self.assertTrue(all(r["tls_version"].startswith("TLSv1.") for r in answer))
