"""The embedded emulator serves before its engine workers have finished starting: a job
submitted meanwhile waits in a helper thread for the pool, never on the event loop."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wanrecipe.emulator.early import PendingPool as _PendingPool


def _square(x: int) -> int:
    return x * x


def test_jobs_submitted_before_the_pool_is_up_run_once_it_is() -> None:
    ready = threading.Event()
    pool = ThreadPoolExecutor(2)

    def take() -> ThreadPoolExecutor:
        ready.wait(10)  # the pool is still starting
        return pool

    pending = _PendingPool(take)
    t0 = time.monotonic()
    futures = [pending.submit(_square, i) for i in range(4)]
    assert time.monotonic() - t0 < 1.0  # submit never waits for the pool
    assert not any(f.done() for f in futures)
    ready.set()
    assert [f.result(timeout=10) for f in futures] == [0, 1, 4, 9]
    assert pending.submit(_square, 5).result(timeout=10) == 25  # now straight to the pool
    pending.shutdown(wait=True)


def test_a_job_cancelled_while_the_pool_starts_never_runs() -> None:
    ready = threading.Event()
    ran: list[int] = []

    def record(x: int) -> int:
        ran.append(x)
        return x

    pool = ThreadPoolExecutor(1)
    pending = _PendingPool(lambda: (ready.wait(10), pool)[1])
    future = pending.submit(record, 1)
    assert future.cancel()
    ready.set()
    assert pending.submit(record, 2).result(timeout=10) == 2
    pending.shutdown(wait=True)
    assert ran == [2]


def test_an_error_in_the_job_reaches_its_caller() -> None:
    pool = ThreadPoolExecutor(1)
    pending = _PendingPool(lambda: pool)

    def boom() -> None:
        raise ValueError("engine failure")

    with pytest.raises(ValueError, match="engine failure"):
        pending.submit(boom).result(timeout=10)
    pending.shutdown(wait=True)
