"""Per-user serial execution of stanza processing.

Roster and presence processing reads and writes the database, so it is
asynchronous. To keep a user's stanzas in order (RFC 6120 10.1: in-order
processing) and their roster consistent, every operation that touches a
user's state runs through that user's queue: one at a time, in arrival order.
An operation that finishes synchronously costs no more than a function call
plus one Deferred.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure


class SerialQueues:
    """Runs operations one at a time per key, in the order they were submitted."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque] = {}

    def busy(self, key: Hashable) -> bool:
        """True while an operation for that key is running or waiting."""
        return key in self._queues

    def run(self, key: Hashable, function: Callable[..., Any], *args: Any) -> defer.Deferred:
        """Run function(*args) after the key's earlier operations; fires with its result.

        When the key is idle the function runs at once, and if it finishes
        at once its own (fired) Deferred is returned: no queue is kept and
        no Deferred made beyond the function's. Operations it submits for
        the same key while it runs still wait for it.
        """
        queue = self._queues.get(key)
        if queue is not None:
            done: defer.Deferred = defer.Deferred()
            queue.append((function, args, done))
            return done
        queue = self._queues[key] = deque()
        result = defer.maybeDeferred(function, *args)
        if not result.called or result.paused:
            done = defer.Deferred()
            queue.appendleft((function, args, done))  # the running operation's place
            result.addBoth(self._resume, key, queue, done)
            return done
        self._drain(key, queue)  # what was submitted while it ran
        return result

    def _drain(self, key: Hashable, queue: deque) -> None:
        while queue:
            function, args, done = queue[0]
            operation = defer.maybeDeferred(function, *args)
            if not operation.called or operation.paused:
                operation.addBoth(self._resume, key, queue, done)
                return
            queue.popleft()
            operation.chainDeferred(done)
        if self._queues.get(key) is queue:
            del self._queues[key]

    def _resume(self, result: Any, key: Hashable, queue: deque, done: defer.Deferred) -> None:
        queue.popleft()
        if isinstance(result, Failure):
            done.errback(result)
        else:
            done.callback(result)
        self._drain(key, queue)
