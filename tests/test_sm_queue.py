"""xmppd.sm.queue: per-user serial queues."""


from twisted.internet import defer
from twisted.trial import unittest

from xmppd.sm.queue import SerialQueues


class SerialQueuesTests(unittest.TestCase):
    def test_order_and_results(self):
        """Operations for one key run one at a time, in order; other keys run at once."""
        queues = SerialQueues()
        log = []
        gate = defer.Deferred()

        def slow():
            log.append("slow start")
            return gate.addCallback(lambda _: log.append("slow end") or "slow")

        first = queues.run("a", slow)
        second = queues.run("a", lambda: log.append("second") or 2)
        other = queues.run("b", lambda: log.append("other") or 3)
        self.assertTrue(queues.busy("a"))
        self.assertFalse(queues.busy("b"))
        self.assertEqual(log, ["slow start", "other"])
        self.assertEqual(self.successResultOf(other), 3)
        gate.callback(None)
        self.assertEqual(log, ["slow start", "other", "slow end", "second"])
        self.assertEqual(self.successResultOf(first), "slow")
        self.assertEqual(self.successResultOf(second), 2)
        self.assertFalse(queues.busy("a"))

    def test_failure_does_not_stop_queue(self):
        queues = SerialQueues()
        gate = defer.Deferred()
        first = queues.run("a", lambda: gate)
        second = queues.run("a", lambda: 1 / 0)
        third = queues.run("a", lambda: "ok")
        gate.errback(RuntimeError("x"))
        self.failureResultOf(first, RuntimeError)
        self.failureResultOf(second, ZeroDivisionError)
        self.assertEqual(self.successResultOf(third), "ok")
