"""xmppd.systemd: readiness and state notifications."""

import os
import socket
from pathlib import Path

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.support import short_folder
from xmppd import systemd


class NotifyTests(unittest.TestCase):
    """READY=1 and friends reach a unix datagram socket, abstract or not."""

    def receiver(self, address):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        sock.settimeout(5)
        return sock

    def test_path_socket(self):
        path = short_folder(self) / "notify"
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
