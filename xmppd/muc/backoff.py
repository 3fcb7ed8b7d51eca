"""Throttling of failed room-password joins (issue 6, "guessing").

:class:`FailureBackoff` counts failures per key (here: room and bare JID of
the user) on the service's reactor clock. After ``max_failures`` failures
within ``window`` seconds the key is blocked for ``base_delay`` seconds; the
first failure after a block has expired starts a block twice as long, up to
``max_delay``; a key that stays quiet for ``window`` seconds after its block
(or, unblocked, ``window`` seconds after its first failure) starts afresh.
A success forgets the key. While a key is blocked the caller refuses the
attempt without looking at the password at all.

The table is bounded (``max_entries``, oldest dropped first), so a flood of
distinct keys costs constant memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int
    first: float
    blocked_until: float = 0.0
    blocks: int = 0


class FailureBackoff:
    """Exponential back-off after repeated failures, per key."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_failures: int = 5,
        window: float = 60.0,
        base_delay: float = 10.0,
        max_delay: float = 3600.0,
        max_entries: int = 10_000,
    ) -> None:
        if max_failures < 1 or window <= 0 or base_delay <= 0 or max_delay < base_delay:
            raise ValueError("invalid back-off settings")
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_entries = max_entries
        self._records: OrderedDict[Hashable, _Record] = OrderedDict()

    def blocked_for(self, key: Hashable) -> float:
        """Seconds the key stays blocked (0 when attempts are allowed)."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        return max(0.0, record.blocked_until - self._clock())

    def failure(self, key: Hashable) -> float:
        """Record a failure; returns the block (seconds) it starts, or 0."""
        now = self._clock()
        record = self._records.get(key)
        if record is not None and self._expired(record, now):
            record = None
        if record is None:
            record = _Record(0, now)
        record.failures += 1
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)
        if record.failures < self.max_failures and not record.blocks:
            return 0.0
        delay = min(self.base_delay * 2**record.blocks, self.max_delay)
        record.blocks += 1
        record.blocked_until = now + delay
        return delay

    def _expired(self, record: _Record, now: float) -> bool:
        """A record is forgotten a window after its first failure, or after its block."""
        if record.blocks:
            return now - record.blocked_until > self.window
        return now - record.first > self.window

    def success(self, key: Hashable) -> None:
        """Forget the key's failures."""
        self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)
