"""tests.support: the helpers the other test modules share."""

from __future__ import annotations

import sys

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.support import process_output


class ProcessOutputTests(unittest.TestCase):
    """``process_output``: a child's output and exit code, a death by signal included."""

    @defer.inlineCallbacks
    def test_exit_code_and_output(self) -> None:
        """A normal end gives the output and the exit code."""
        script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
        out, err, code = yield process_output(sys.executable, ["-c", script], reactor=reactor)
        self.assertEqual((out.strip(), err.strip(), code), (b"out", b"err", 3))

    @defer.inlineCallbacks
    def test_signal_death_is_a_negative_code_with_the_output(self) -> None:
        """A process killed by signal 9 fires with code -9 and what it wrote, not an error."""
        script = ("import os, signal, sys; sys.stdout.write('before'); sys.stdout.flush(); "
                  "os.kill(os.getpid(), signal.SIGKILL)")
        out, err, code = yield process_output(sys.executable, ["-c", script], reactor=reactor)
        self.assertEqual((out, code), (b"before", -9))
