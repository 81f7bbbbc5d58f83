"""When to ask about a task again: learn how long tasks take, poll densely around the expected
finish and sparsely elsewhere, never more often in total than the official SDK would.

The budget rule: our k-th query of a task is never sent before the SDK's k-th query time
(0, 1, 2, 4, 6, 8, 12, 16, 20, 25 s, then every 5 s). Whatever the task's duration D, we then
make at most as many queries as the SDK makes before it sees D; we only move them to where
the task is likely to end. Times count from the moment the submit answer arrived, like the
SDK's first poll; the model learns durations from the server's own timestamps (differences
only: the server's clock and zone are not ours).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .. import wire
from ..backends.models import TaskState
from ..errors import BackendError, TaskWaitTimeout
from .quota import QuotaGate
from .retry import DEFAULT_POLICY, ErrorClass, RetryPolicy, classify


def sdk_poll_times() -> Iterator[float]:
    """The official SDK's poll times after submit: 0, 1, 2, 4, 6, 8, 12, 16, 20, 25, 30, ..."""
    t = 0.0
    yield t
    for sleep in itertools.chain(wire.SDK_POLL_SLEEPS, itertools.repeat(wire.SDK_POLL_SLEEP_MAX)):
        t += sleep
        yield t


def sdk_poll_time(k: int) -> float:
    """When the SDK sends its k-th query (0-based)."""
    return next(itertools.islice(sdk_poll_times(), k, None))


def sdk_polls_by(t: float) -> int:
    """How many queries the SDK has sent by time ``t`` (inclusive)."""
    if t < 0:
        return 0
    for count, when in enumerate(sdk_poll_times()):
        if when > t:
            return count
    raise AssertionError("unreachable")  # pragma: no cover


def sdk_queries_for(duration: float) -> int:
    """Queries the SDK makes for a task that ends ``duration`` s after submit (the first
    poll at or after the end sees it)."""
    return sdk_polls_by(duration) + (0 if duration in _SDK_TIMES_SET else 1)


_SDK_TIMES_SET = frozenset(itertools.islice(sdk_poll_times(), 200))


@dataclass(frozen=True)
class PollPolicy:
    """How to poll. Durations are seconds of RUNNING time (scheduled -> end)."""

    #: Prior for a function never seen (spec: "about 5-15 s").
    prior_low: float = 5.0
    prior_high: float = 15.0
    #: Widening of the learned range on each side: max(margin, rel_margin * median), more
    #: when the model has seen few tasks.
    margin: float = 0.05
    rel_margin: float = 0.02
    #: Shortest gap between two queries of one task.
    min_interval: float = 0.05
    #: Sparse looks before the prior's range, while nothing is learned yet.
    early_checks: tuple[float, ...] = (1.0, 3.0)
    #: Longest gap once the task overran the window (the SDK's own maximum).
    max_interval: float = float(wire.SDK_POLL_SLEEP_MAX)
    #: Keep at most this many durations per function.
    history: int = 64
    #: Failed queries: ``attempts`` consecutive 5xx/network failures, ``throttle_*`` for 429s.
    retry: RetryPolicy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        if not 0 < self.prior_low <= self.prior_high:
            raise ValueError("need 0 < prior_low <= prior_high")
        if self.min_interval <= 0 or self.max_interval < self.min_interval:
            raise ValueError("need 0 < min_interval <= max_interval")


class DurationModel:
    """Per-function running durations, learned as tasks finish; shared by a whole run."""

    def __init__(self, policy: PollPolicy | None = None) -> None:
        self.policy = policy or PollPolicy()
        self._by_function: dict[str, deque[float]] = {}
        self._pooled: deque[float] = deque(maxlen=self.policy.history)

    def observe(self, function: str, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        samples = self._by_function.setdefault(function, deque(maxlen=self.policy.history))
        samples.append(seconds)
        self._pooled.append(seconds)

    def observe_task(self, function: str, state: TaskState) -> None:
        """Learn from a SUCCEEDED task's server timestamps (FAILED ones often end at once)."""
        if state.status != "SUCCEEDED":
            return
        seconds = state.run_seconds if state.run_seconds is not None else state.total_seconds
        if seconds is not None:
            self.observe(function, seconds)

    def snapshot(self) -> dict[str, list[float]]:
        """The learned durations per function, to keep for the next run."""
        return {fn: [round(x, 4) for x in samples] for fn, samples in self._by_function.items()}

    def restore(self, data: Mapping[str, Sequence[float]]) -> None:
        """Learn what an earlier run saw (see :meth:`snapshot`); bad entries are skipped."""
        for function, samples in data.items():
            if isinstance(function, str) and isinstance(samples, list | tuple):
                for seconds in samples[-self.policy.history :]:
                    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                        self.observe(function, float(seconds))

    def samples(self, function: str) -> tuple[float, ...]:
        """What the estimate rests on: this function's durations, else all functions'."""
        own = self._by_function.get(function)
        return tuple(own) if own else tuple(self._pooled)

    def distribution(self, function: str, policy: PollPolicy | None = None) -> Distribution:
        """Running time as a piecewise-linear quantile function: each sample at its plotting
        position, widened by a margin at both ends; the prior (uniform) when nothing is known."""
        p = policy or self.policy
        data = sorted(self.samples(function))
        if not data:
            return Distribution((0.0, 1.0), (p.prior_low, p.prior_high), prior=True)
        n = len(data)
        margin = max(p.margin, p.rel_margin * _median(data)) * (1.0 + 2.0 / n)
        levels = (0.0, *((i + 0.5) / n for i in range(n)), 1.0)
        return Distribution(
            levels,
            (max(0.0, data[0] - margin), *data, data[-1] + margin),
            # Other functions' durations are a better prior than none, but only a prior.
            prior=not self._by_function.get(function),
        )

    def window(self, function: str, policy: PollPolicy | None = None) -> tuple[float, float]:
        """[low, high] seconds of RUNNING time within which the task most likely ends."""
        dist = self.distribution(function, policy)
        return dist.seconds[0], dist.seconds[-1]

    def expected(self, function: str) -> float:
        return self.distribution(function).quantile(0.5)

    def next_poll_delay(
        self,
        function: str,
        elapsed: float,
        attempt: int,
        *,
        started: float = 0.0,
        policy: PollPolicy | None = None,
    ) -> float:
        """Seconds from ``elapsed`` (since submit) until query number ``attempt`` (0-based).

        ``started``: when the task began RUNNING, in the same seconds-since-submit (a lower
        bound while it is PENDING). ``policy`` overrides the model's own for this task.
        """
        p = policy or self.policy
        dist = self.distribution(function, p)
        lo, hi = started + dist.seconds[0], started + dist.seconds[-1]
        earliest = max(sdk_poll_time(attempt), elapsed + p.min_interval)
        if elapsed < hi:
            # Split the probability still ahead into equal parts, one per query the budget
            # allows by the end of the range: dense where tasks usually end, sparse elsewhere.
            affordable = max(1, sdk_polls_by(hi) - attempt)
            done = dist.cdf(elapsed - started)
            target = started + dist.quantile(done + (1.0 - done) / affordable)
            # Before anything is known, a look or two early catches tasks far faster than
            # the prior (and failures at submit time); once durations are known, every query
            # goes where tasks end.
            checks = p.early_checks if dist.prior else ()
            for check in checks:
                if elapsed + p.min_interval <= check < min(lo, target) - p.min_interval:
                    target = check
                    break
        else:
            # Overran the range: back off in proportion to the time taken, the SDK's way.
            target = elapsed + min(p.max_interval, max(p.min_interval, 0.1 * elapsed))
        return max(earliest, target) - elapsed


@dataclass(frozen=True)
class Distribution:
    """A quantile function through the points (levels[i], seconds[i]); levels strictly
    increasing from 0 to 1, seconds non-decreasing."""

    levels: tuple[float, ...]
    seconds: tuple[float, ...]
    #: Nothing learned about this function yet (the policy's prior, or other functions').
    prior: bool = False

    def quantile(self, level: float) -> float:
        level = min(1.0, max(0.0, level))
        j = min(max(1, bisect.bisect_right(self.levels, level)), len(self.levels) - 1)
        p0, p1 = self.levels[j - 1], self.levels[j]
        x0, x1 = self.seconds[j - 1], self.seconds[j]
        return x0 + (x1 - x0) * (level - p0) / (p1 - p0)

    def cdf(self, seconds: float) -> float:
        """The share of tasks done by ``seconds`` (the inverse of :meth:`quantile`)."""
        xs = self.seconds
        if seconds < xs[0]:
            return 0.0
        if seconds >= xs[-1]:
            return 1.0
        j = bisect.bisect_right(xs, seconds)  # xs[j-1] <= seconds < xs[j]
        p0, p1 = self.levels[j - 1], self.levels[j]
        return p0 + (p1 - p0) * (seconds - xs[j - 1]) / (xs[j] - xs[j - 1])


def _median(data: list[float]) -> float:
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


class TaskQuerier(Protocol):
    async def query(self, task_id: str) -> TaskState: ...


@dataclass
class PollStats:
    """What one wait cost; filled in by :func:`wait_for_task` as it goes."""

    queries: int = 0
    failed_queries: int = 0
    throttled: int = 0
    #: Seconds since submit at each query sent.
    times: list[float] = field(default_factory=list)


async def wait_for_task(
    client: TaskQuerier,
    task_id: str,
    function: str,
    *,
    gate: QuotaGate,
    model: DurationModel,
    deadline: float,
    policy: PollPolicy | None = None,
    submitted_at: float | None = None,
    stats: PollStats | None = None,
    on_status: Callable[[str], None] | None = None,
    rng: random.Random | None = None,
) -> TaskState:
    """Poll ``task_id`` until it is terminal and return its last state (any terminal status:
    the caller decides what FAILED means).

    ``deadline`` and ``submitted_at`` are ``time.monotonic()`` values; ``submitted_at`` is when
    the submit answer arrived (default: now). ``on_status`` hears every change of status.
    Raises :class:`TaskWaitTimeout` at the deadline, or the query's own error once its retry
    budget is spent or when it cannot be retried.
    """
    policy = policy or model.policy
    retry = policy.retry
    stats = stats if stats is not None else PollStats()
    t0 = time.monotonic() if submitted_at is None else submitted_at
    started = 0.0
    failures = throttles = 0
    last_status: str | None = None
    delay = model.next_poll_delay(function, time.monotonic() - t0, 0, policy=policy)
    while True:
        now = time.monotonic()
        wake = now + delay
        if wake > deadline:
            if now >= deadline:
                raise TaskWaitTimeout(
                    "WaitTaskTimeout",
                    f"task {task_id} did not finish within {deadline - t0:.1f} s of its submit",
                    task_id=task_id,
                )
            wake = deadline  # one last look at the deadline itself
        await asyncio.sleep(max(0.0, wake - now))
        try:
            async with gate.query():
                stats.queries += 1
                stats.times.append(time.monotonic() - t0)
                state = await client.query(task_id)
        except BackendError as exc:
            kind = classify(exc)
            elapsed = time.monotonic() - t0
            budget_wait = sdk_poll_time(stats.queries) - elapsed
            if kind is ErrorClass.THROTTLED:
                throttles += 1
                stats.throttled += 1
                if throttles > retry.throttle_attempts:
                    raise
                backoff = retry.throttle_delay(throttles, rng)
                gate.back_off_queries(backoff)  # every waiter backs off, not just this one
                delay = max(budget_wait, backoff)
            elif kind in (ErrorClass.SERVER, ErrorClass.UNCERTAIN, ErrorClass.NOT_SENT):
                failures += 1
                stats.failed_queries += 1
                delay = max(budget_wait, retry.delay(failures, rng))
                if failures >= retry.attempts and (
                    not retry.until_deadline or time.monotonic() + delay >= deadline
                ):
                    raise
            else:
                raise
            continue
        failures = throttles = 0
        if state.status != last_status:
            last_status = state.status
            if on_status is not None:
                on_status(state.status)
        if state.terminal:
            model.observe_task(function, state)
            return state
        elapsed = time.monotonic() - t0
        if state.status == "RUNNING" and state.queue_seconds is not None:
            started = max(0.0, state.queue_seconds)
        elif state.status == "PENDING":
            started = max(started, elapsed)
        delay = model.next_poll_delay(
            function, elapsed, stats.queries, started=started, policy=policy
        )
