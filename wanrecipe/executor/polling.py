"""When to ask about a task again: never later than the official SDK, and densely where the
task is likely to end, spending the account's query quota rather than the SDK's count.

The schedule of one task (times count from the moment the submit answer arrived, like the
SDK's first poll):

- **The SDK's times**: 0, 1, 2, 4, 6, 8, 12, 16, 20, 25 s, then every 5 s (``dashscope``'s
  ``BaseAsyncApi.wait``: 1 s sleeps, doubled every 3 polls up to 5 s). While nothing is
  learned about the task's function every one of them is kept, so a task is never noticed
  later than the SDK would notice it. Once the function's durations are known, those before
  the likely window are skipped (they would find the task still running).
- **The likely window** [low, high] of the learned distribution (:mod:`.learned`; the prior
  5-15 s when nothing is known): queries spread by probability, at most one per ``spacing``
  seconds. ``spacing`` defaults to ``concurrency / (0.9 * query_qps)`` of the run's quota:
  with 2 running tasks and 10 queries/s each task asks every 0.22 s, so a finish inside the
  window is noticed within about 0.2 s.
- **Past the window** (the task overran): queries back off in proportion to the time taken,
  up to the SDK's 5 s.

**Hard cap**: the queries outside the SDK's times are at most ``dense_cap`` (default 60) per
task; after that only the SDK's times remain. So a task never costs more than the SDK's
queries for it plus ``dense_cap``, and the run's quota gate keeps the sum of all tasks under
``query_qps`` whatever the schedule. Durations are learned from the server's own timestamps
(differences only: the server's clock and zone are not ours).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import wire
from ..backends.models import TaskState
from ..errors import BackendError, TaskWaitTimeout
from .learned import Distribution, DurationKey, DurationModel, duration_key
from .quota import QuotaGate
from .retry import DEFAULT_POLICY, ErrorClass, RetryPolicy, classify

__all__ = [
    "Distribution",
    "DurationKey",
    "DurationModel",
    "PollPlan",
    "PollPolicy",
    "PollStats",
    "duration_key",
    "grid_phase",
    "sdk_poll_time",
    "sdk_poll_times",
    "sdk_polls_by",
    "sdk_queries_for",
    "wait_for_task",
]


def sdk_poll_times() -> Iterator[float]:
    """The official SDK's poll times after submit: 0, 1, 2, 4, 6, 8, 12, 16, 20, 25, 30, ..."""
    t = 0.0
    yield t
    for sleep in itertools.chain(wire.SDK_POLL_SLEEPS, itertools.repeat(wire.SDK_POLL_SLEEP_MAX)):
        t += sleep
        yield t


_SDK_HEAD = tuple(itertools.islice(sdk_poll_times(), len(wire.SDK_POLL_SLEEPS) + 1))


def sdk_poll_time(k: int) -> float:
    """When the SDK sends its k-th query (0-based)."""
    if k < len(_SDK_HEAD):
        return _SDK_HEAD[k]
    return _SDK_HEAD[-1] + (k - len(_SDK_HEAD) + 1) * wire.SDK_POLL_SLEEP_MAX


def sdk_polls_by(t: float) -> int:
    """How many queries the SDK has sent by time ``t`` (inclusive)."""
    if t < 0:
        return 0
    if t < _SDK_HEAD[-1]:
        return next(k for k, when in enumerate(_SDK_HEAD) if when > t)
    return len(_SDK_HEAD) + math.floor((t - _SDK_HEAD[-1]) / wire.SDK_POLL_SLEEP_MAX)


def sdk_next_time(t: float) -> float:
    """The SDK's first poll time strictly after ``t``."""
    return sdk_poll_time(sdk_polls_by(t))


def sdk_queries_for(duration: float) -> int:
    """Queries the SDK makes for a task that ends ``duration`` s after submit (the first
    poll at or after the end sees it)."""
    count = sdk_polls_by(duration)
    return count if sdk_poll_time(count - 1) == duration else count + 1


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
    #: Shortest gap between two queries of one task, whatever the quota allows.
    min_interval: float = 0.05
    #: Gap between queries inside the likely window; None: concurrency / query_qps of the
    #: run's quota (each running task's share of the query rate).
    spacing: float | None = None
    #: Hard cap: queries per task beyond the SDK's own poll times.
    dense_cap: int = 60
    #: Extra looks (seconds after submit) while nothing is learned, besides the SDK's.
    early_checks: tuple[float, ...] = ()
    #: Longest gap once the task overran the window (the SDK's own maximum).
    max_interval: float = float(wire.SDK_POLL_SLEEP_MAX)
    #: Keep at most this many durations per key.
    history: int = 64
    #: Failed queries: ``attempts`` consecutive 5xx/network failures, ``throttle_*`` for 429s.
    retry: RetryPolicy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        if not 0 < self.prior_low <= self.prior_high:
            raise ValueError("need 0 < prior_low <= prior_high")
        if self.min_interval <= 0 or self.max_interval < self.min_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if self.spacing is not None and self.spacing <= 0:
            raise ValueError("spacing must be > 0")
        if self.dense_cap < 0:
            raise ValueError("dense_cap must be >= 0")

    def spacing_for(self, concurrency: int, query_qps: float) -> float:
        """The gap between one task's queries in its window: each running task's share of
        the query rate, with a tenth left over (the SDK's own times and retries come on top,
        and a gate kept full makes every query wait)."""
        if self.spacing is not None:
            return max(self.min_interval, self.spacing)
        return min(1.0, max(self.min_interval, concurrency / (_HEADROOM * query_qps)))


#: The share of the query rate the dense queries plan to use.
_HEADROOM = 0.9
#: At most this many spacings of a late query are forgiven when the next grid point is picked.
_LATE = 0.5


class PollPlan:
    """The poll times of one task, decided one at a time as its state comes in."""

    def __init__(
        self,
        model: DurationModel,
        key: DurationKey | str,
        policy: PollPolicy,
        spacing: float,
    ) -> None:
        self.model = model
        self.key = key
        self.policy = policy
        self.spacing = spacing
        self.dense_left = policy.dense_cap
        self.sent = 0
        self._last: float | None = None  # seconds since submit of the last query sent
        self._pending_dense = False
        self._planned: float | None = None  # what next_time last answered
        self._late = 0.0  # how much later than planned the last query went out

    def next_time(self, elapsed: float, started: float = 0.0) -> float:
        """When to send the next query, in seconds since submit (``elapsed`` is now).

        ``started``: when the task began RUNNING, in the same seconds (a lower bound while it
        is PENDING)."""
        p, spacing = self.policy, self.spacing
        dist = self.model.distribution(self.key)
        cold = dist.prior
        lo, hi = started + dist.low, started + dist.high
        phase = None if cold else self._phase(dist)
        if phase is not None:
            # The grid's last point is the first at or after the longest duration seen.
            top = started + dist.samples[-1]
            hi = max(hi, started + phase + math.ceil((top - started - phase) / spacing) * spacing)
        last = self._last
        floor = elapsed if last is None else max(elapsed, last + spacing)
        # The SDK's next time: always while cold; once warm only past the window (inside it
        # the grid below is denser).
        sdk = 0.0 if last is None else sdk_next_time(last)
        if not cold and sdk < hi:
            sdk = sdk_next_time(hi)
        dense = math.inf
        if self.dense_left > 0:
            if elapsed < hi:
                at = max(floor, lo)
                if phase is not None:
                    # Warm: one query per spacing on a grid placed where the learned tasks
                    # end (just after them), so the likely finish is seen at once. A point
                    # the floor has just passed (the last query went out a few ms late: a
                    # timer, a busy loop) is still taken, at the floor, rather than the next
                    # point a whole spacing later.
                    first = (
                        started
                        + phase
                        + math.ceil((at - started - phase) / spacing - self._slack()) * spacing
                    )
                    steps = max(0, math.floor((hi - first) / spacing + 1e-9)) + 1
                    first = max(first, at)
                else:
                    steps = max(0, math.floor((hi - at) / spacing + 1e-9))
                    # A grid that ends at the window's end (a narrow window gets a single
                    # query there), so a finish anywhere inside is seen within ``spacing``.
                    first = hi - steps * spacing
                if steps <= self.dense_left:
                    dense = first
                else:
                    # The cap does not cover the rest of the window: split the probability
                    # still ahead into equal parts, one per query left, dense where tasks
                    # usually end.
                    done = dist.cdf(at - started)
                    dense = started + dist.quantile(done + (1.0 - done) / self.dense_left)
                if cold:
                    for check in p.early_checks:
                        if floor <= check < dense:
                            dense = check
                            break
            else:
                # Overran the window: back off in proportion to the time taken.
                dense = elapsed + min(p.max_interval, max(spacing, 0.1 * elapsed))
            dense = max(dense, floor)
        if cold:
            # Every SDK time is kept: a dense query only where it leaves room before the next.
            self._pending_dense = dense < sdk and sdk - dense >= spacing
            when = dense if self._pending_dense else max(sdk, elapsed)
        else:
            # Warm: the SDK's times are only the fallback past the window (one spacing apart).
            self._pending_dense = dense < sdk
            when = dense if self._pending_dense else max(sdk, floor)
        self._planned = when
        return when

    def _slack(self) -> float:
        """How late (in spacings, at most ``_LATE``) the last query went out after its
        planned time: by as much the floor may be past a grid point that is still taken."""
        return min(_LATE, self._late / self.spacing) + 1e-9

    def _phase(self, dist: Distribution) -> float | None:
        """Where (mod ``spacing``) the warm grid's points fall, from ``dist``'s samples
        (computed once per distribution and spacing, shared by every task that uses it)."""
        phases = dist.phases
        if self.spacing not in phases:
            phases[self.spacing] = grid_phase(dist.samples, self.spacing)
        return phases[self.spacing]

    def sent_at(self, elapsed: float) -> None:
        """A query went out at ``elapsed``: count it against the cap if it was not the SDK's."""
        if self._pending_dense:
            self.dense_left -= 1
        self._pending_dense = False
        self._late = max(0.0, elapsed - self._planned) if self._planned is not None else 0.0
        self._last = elapsed
        self.sent += 1

    def delay(self, elapsed: float, started: float = 0.0) -> float:
        return max(0.0, self.next_time(elapsed, started) - elapsed)


def grid_phase(samples: Sequence[float], spacing: float) -> float | None:
    """The offset in [0, spacing) of a query grid (offset + k * spacing) that notices the
    learned durations ``samples`` soonest on average: just after one of them (a task of a
    fixed duration is seen a few ms after it ends, not up to ``spacing`` later). None
    without samples.

    The mean delay of offset f over residues r_i = d_i mod spacing is
    (sum over i of (f - r_i) mod spacing) / n, least just after some r_i: O(n log n)."""
    if not samples:
        return None
    median = samples[len(samples) // 2]
    # Past the sample by a hair: the server stamps its times to the millisecond.
    eps = max(0.003, 0.002 * median)
    residues = sorted(math.fmod(d + eps, spacing) for d in samples)
    n, total = len(residues), sum(residues)
    best, best_cost = residues[-1], math.inf
    for j, f in enumerate(residues):
        # residues after index j are > f (ties: the last equal one is counted as <=)
        later = n - bisect.bisect_right(residues, f, lo=j)
        cost = n * f - total + spacing * later
        if cost < best_cost - 1e-12:
            best, best_cost = f, cost
    return best


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
    function: DurationKey | str,
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

    ``function``: the task's function, or its :class:`DurationKey` (what drives its duration).
    ``deadline`` and ``submitted_at`` are ``time.monotonic()`` values; ``submitted_at`` is when
    the submit answer arrived (default: now). ``on_status`` hears every change of status.
    Raises :class:`TaskWaitTimeout` at the deadline, or the query's own error once its retry
    budget is spent or when it cannot be retried.
    """
    policy = policy or model.policy
    retry = policy.retry
    stats = stats if stats is not None else PollStats()
    quota: Any = gate.quota
    plan = PollPlan(model, function, policy, policy.spacing_for(quota.concurrency, quota.query_qps))
    t0 = time.monotonic() if submitted_at is None else submitted_at
    started = 0.0
    failures = throttles = 0
    last_status: str | None = None
    delay = plan.delay(time.monotonic() - t0)
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
        if wake > now:
            await asyncio.sleep(wake - now)
        try:
            async with gate.query():
                sent = time.monotonic() - t0
                plan.sent_at(sent)
                stats.queries += 1
                stats.times.append(sent)
                state = await client.query(task_id)
        except BackendError as exc:
            kind = classify(exc)
            if kind is ErrorClass.THROTTLED:
                throttles += 1
                stats.throttled += 1
                if throttles > retry.throttle_attempts:
                    raise
                backoff = retry.throttle_delay(throttles, rng)
                gate.back_off_queries(backoff)  # every waiter backs off, not just this one
                delay = max(plan.delay(time.monotonic() - t0, started), backoff)
            elif kind in (ErrorClass.SERVER, ErrorClass.UNCERTAIN, ErrorClass.NOT_SENT):
                failures += 1
                stats.failed_queries += 1
                delay = max(plan.delay(time.monotonic() - t0, started), retry.delay(failures, rng))
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
        delay = plan.delay(elapsed, started)
