"""xmppd.logs: the journald format and log levels."""

import io
import os
from pathlib import Path

from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial import unittest

from xmppd import logs


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
