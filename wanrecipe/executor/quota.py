"""Client-side quota: the client never sends what the account's quota would refuse.

Three limits, each an async context manager on :class:`QuotaGate`:

- ``submission()``: at most ``submit_rps`` submits in any window of one second (plus a safety
  margin), counted from when each submit may have *arrived* at the server: until its answer is
  back, a submit in flight counts as arriving "now". The server sees arrival times, which lag
  our send times by a jittery amount; bounding by the answer time is what keeps us clear of
  its window whatever the jitter.
- ``slot()``: running-task slots, held from before the submit until the task is terminal.
- ``query()``: at most ``query_qps`` task queries in any one-second window.

Every waiter is served first come, first served; a waiter cancelled while waiting takes nothing
with it (no token, no slot). Waiting sleeps on futures and timers, never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from .. import wire


@dataclass(frozen=True)
class Quota:
    """The account's limits as the client enforces them.

    Defaults are the model's (2 submits/s, 2 running tasks); queries stay at half the
    account's 20/s so another client on the same account still has room.
    """

    submit_rps: float = wire.SUBMIT_RPS
    concurrency: int = wire.CONCURRENCY
    query_qps: float = 10.0
    #: Extra seconds added to every rate window: clock edges and jitter between us and the server.
    margin: float = 0.02

    def __post_init__(self) -> None:
        if not self.submit_rps > 0 or not self.query_qps > 0:
            raise ValueError("submit_rps and query_qps must be > 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.margin < 0:
            raise ValueError("margin must be >= 0")


def window_for(rate: float) -> tuple[int, float]:
    """(events, seconds) of a sliding window that never admits more than ``rate`` per second.

    ``rate`` >= 1 allows floor(rate) events per second; below 1, one event per 1/rate seconds.
    """
    if rate >= 1:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


class SlidingWindowLimiter:
    """At most ``capacity`` events in any ``window`` seconds, FIFO, cancellation-safe.

    An event occupies the window from its grant until ``window`` after it was *released*; an
    event still held (a request in flight) blocks the window until released.
    """

    def __init__(
        self,
        capacity: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("capacity must be >= 1 and window > 0")
        self.capacity = capacity
        self.window = window
        self._clock = clock
        self._lock = asyncio.Lock()  # FIFO among waiters; only its holder may take a grant
        self._released: deque[float] = deque()  # release times, ascending
        self._held = 0
        self._changed = asyncio.Event()
        self._paused_until = 0.0
        #: Grant times of recent events, for tests and stats.
        self.grants: deque[float] = deque(maxlen=10_000)

    def _busy(self, now: float) -> int:
        while self._released and self._released[0] + self.window <= now:
            self._released.popleft()
        return self._held + len(self._released)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    wait: float | None = self._paused_until - now
                elif self._busy(now) < self.capacity:
                    self._held += 1
                    self.grants.append(now)
                    return
                else:
                    wait = self._released[0] + self.window - now if self._released else None
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)

    def release(self) -> None:
        self._held -= 1
        self._released.append(self._clock())
        self._changed.set()

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (the server said 429: everyone backs off, not just
        the caller that was refused)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class FifoSemaphore:
    """A counting semaphore that wakes waiters strictly in arrival order."""

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError("value must be >= 1")
        self.value = value
        self._free = value
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        return self.value - self._free

    @property
    def waiting(self) -> bool:
        """Whether someone waits: a release now hands the permit straight to them."""
        return any(not f.done() for f in self._waiters)

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted, then cancelled before resuming: hand the permit on.
                self.release()
            else:
                with contextlib.suppress(ValueError):  # release() may have popped it already
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the permit passes directly to this waiter
                return
        self._free += 1
        if self._free > self.value:
            raise RuntimeError("FifoSemaphore released more often than acquired")

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class QuotaGate:
    """The three limits of one account, shared by every task of a run."""

    def __init__(self, quota: Quota = Quota(), *, clock: Callable[[], float] = time.monotonic):
        self.quota = quota
        events, seconds = window_for(quota.submit_rps)
        self._submits = SlidingWindowLimiter(events, seconds + quota.margin, clock=clock)
        events, seconds = window_for(quota.query_qps)
        self._queries = SlidingWindowLimiter(events, seconds + quota.margin, clock=clock)
        self._slots = FifoSemaphore(quota.concurrency)

    def submission(self) -> AbstractAsyncContextManager[None]:
        """Hold around exactly one submit request (until its answer or failure)."""
        return self._submits.hold()

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Hold from before the submit until the task is terminal (or known not created)."""
        return self._slots.hold()

    def query(self) -> AbstractAsyncContextManager[None]:
        """Hold around exactly one task query."""
        return self._queries.hold()

    def back_off_submissions(self, seconds: float) -> None:
        """After a 429 on submit: no submission from anyone for ``seconds``."""
        self._submits.pause(seconds)

    def back_off_queries(self, seconds: float) -> None:
        """After a 429 on a query: no query from anyone for ``seconds``."""
        self._queries.pause(seconds)

    @property
    def running(self) -> int:
        """Slots held right now."""
        return self._slots.in_use

    @property
    def submit_times(self) -> list[float]:
        return list(self._submits.grants)

    @property
    def query_times(self) -> list[float]:
        return list(self._queries.grants)
