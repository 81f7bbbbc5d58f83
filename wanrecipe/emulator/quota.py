"""Server-side limits: token buckets for request rates, a sliding-window peak meter.

Rates use ``time.monotonic`` rather than the injectable wall clock: throttling is about real
elapsed time, expiry is about the calendar.
"""

from __future__ import annotations

import time
from collections import deque


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; rate 0 means unlimited.

    ``grace`` (seconds) credits tokens that would arrive that much later, so a client pacing
    itself with the same bucket is not refused because of network jitter between its clock and
    ours.
    """

    def __init__(self, rate: float, burst: float, grace: float = 0.0) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.grace = grace
        self._tokens = self.burst
        self._stamp = time.monotonic()

    def try_take(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens + self.grace * self.rate >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class WindowPeak:
    """The most events seen within any ``window`` seconds (half-open), and their times."""

    def __init__(self, window: float = 1.0, keep: int = 10_000) -> None:
        self.window = window
        self.peak = 0
        self.times: deque[float] = deque(maxlen=keep)
        self._recent: deque[float] = deque()

    def add(self, now: float) -> None:
        self.times.append(now)
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        self.peak = max(self.peak, len(recent))
