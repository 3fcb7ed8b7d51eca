"""A token bucket for per-occupant message rates (issue 6, "rate limiting").

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second on
the clock it is given (the MUC service's reactor, so tests use task.Clock).
Each message takes one token; a message finding the bucket empty is refused.
"""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(self, clock: Callable[[], float], rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token; False (and nothing taken) when the bucket is empty."""
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
