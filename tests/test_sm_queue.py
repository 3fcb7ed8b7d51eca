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

    def test_nested_submission_waits_for_the_running_operation(self):
        """An operation submitted for the same key by a running one runs after it, also when
        the running one turns out asynchronous."""
        queues = SerialQueues()
        log = []

        def outer_sync():
            queues.run("a", lambda: log.append("inner"))
            log.append("outer end")
            return "outer"

        self.assertEqual(self.successResultOf(queues.run("a", outer_sync)), "outer")
        self.assertEqual(log, ["outer end", "inner"])
        self.assertFalse(queues.busy("a"))

        del log[:]
        gate = defer.Deferred()

        def outer_async():
            queues.run("a", lambda: log.append("inner"))
            log.append("outer waits")
            return gate

        first = queues.run("a", outer_async)
        self.assertEqual(log, ["outer waits"])
        self.assertTrue(queues.busy("a"))
        gate.callback("done")
        self.assertEqual(log, ["outer waits", "inner"])
        self.assertEqual(self.successResultOf(first), "done")
        self.assertFalse(queues.busy("a"))

    def test_synchronous_failure_is_a_failed_deferred(self):
        """An idle key's operation that raises gives a failed Deferred and leaves the key idle."""
        queues = SerialQueues()
        self.failureResultOf(queues.run("a", lambda: 1 / 0), ZeroDivisionError)
        self.assertFalse(queues.busy("a"))
        self.assertEqual(self.successResultOf(queues.run("a", lambda: 5)), 5)
