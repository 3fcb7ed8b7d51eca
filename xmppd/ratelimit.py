"""Rate limiting and back-off on an injectable clock.

* :class:`TokenBucket` — a token bucket: ``rate`` tokens a second, at most
  ``burst`` saved up. Spending more than there is leaves a debt; the bucket
  says how long to wait until it is paid off. Used to slow a connection's
  reads down (pause, then resume) rather than to drop data.
* :class:`Backoff` — exponential back-off per key (an account, an address):
  the ``threshold``-th failure starts a delay of ``base`` seconds and every
  further failure doubles it, up to ``maximum`` seconds; a key is forgotten
  ``maximum`` seconds (or ``window`` seconds, when given) after its delay has
  run out without a new failure, so with a window only failures that come
  close together lead to a delay. Memory is bounded (``max_keys``, oldest
  forgotten first).

Both take a ``clock`` with a ``seconds()`` method (a reactor, or
``twisted.internet.task.Clock`` in tests).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; starts full."""

    def __init__(self, rate: float, burst: float, clock: Any):
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def consume(self, amount: float) -> float:
        """Spend ``amount`` tokens (going into debt if need be).

        Returns the seconds to wait until the debt is paid (0.0 if none).
        """
        self._refill()
        self.tokens -= amount
        return self.wait()

    def take(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if the bucket holds them; False (nothing spent) if not."""
        self._refill()
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def wait(self) -> float:
        """Seconds until the bucket is out of debt (0.0 if it is not in debt)."""
        self._refill()
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate


@dataclass
class _Entry:
    failures: int
    blocked_until: float


class Backoff:
    """Exponential back-off per key after repeated failures."""

    def __init__(
        self,
        clock: Any,
        *,
        threshold: int = 3,
        base: float = 2.0,
        maximum: float = 300.0,
        max_keys: int = 65536,
        window: float | None = None,
    ):
        if threshold < 1 or base <= 0 or maximum < base or max_keys < 1:
            raise ValueError("need threshold >= 1, 0 < base <= maximum and max_keys >= 1")
        if window is not None and window <= 0:
            raise ValueError("window must be positive")
        self.clock = clock
        self.threshold = threshold
        self.base = float(base)
        self.maximum = float(maximum)
        self.max_keys = max_keys
        self.window = float(window) if window is not None else self.maximum
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now >= entry.blocked_until + self.window

    def _get(self, key: Hashable, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and self._expired(entry, now):
            del self._entries[key]
            return None
        return entry

    def delay(self, key: Hashable) -> float:
        """Seconds before ``key`` may try again (0.0 when it may now)."""
        now = self.clock.seconds()
        entry = self._get(key, now)
        if entry is None:
            return 0.0
        return max(0.0, entry.blocked_until - now)

    def failures(self, key: Hashable) -> int:
        """Failures remembered for ``key``."""
        entry = self._get(key, self.clock.seconds())
        return entry.failures if entry is not None else 0

    def failed(self, key: Hashable) -> float:
        """Record a failure; return the delay it starts (0.0 if none yet)."""
        now = self.clock.seconds()
        entry = self._get(key, now)
        if entry is None:
            entry = _Entry(failures=0, blocked_until=now)
        entry.failures += 1
        delay = 0.0
        if entry.failures >= self.threshold:
            exponent = min(entry.failures - self.threshold, 62)
            delay = min(self.base * (2**exponent), self.maximum)
        entry.blocked_until = now + delay
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._prune(now)
        return delay

    def forget(self, key: Hashable) -> None:
        """Drop what is remembered about ``key`` (e.g. after a success)."""
        self._entries.pop(key, None)

    def _prune(self, now: float) -> None:
        # Oldest-updated first: drop expired ones from the front, then any
        # beyond the size bound.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if len(self._entries) > self.max_keys or self._expired(entry, now):
                del self._entries[key]
            else:
                break
