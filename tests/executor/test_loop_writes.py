"""When a run's local writes leave the event loop: at the third slow one, not at the first.

A write on the loop is timed on the wall clock; one that waited for the GIL (another thread
importing modules) looks as slow as an fsync on a slow disk. One such call must not send the
whole rest of a run to worker threads; a disk that stays slow must."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from wanrecipe.executor.stepbase import (
    ON_LOOP_MAX_S,
    ON_LOOP_SLOW_CALLS,
    LoopWrites,
    StepBase,
)
from wanrecipe.store import WouldWait


def _caller() -> SimpleNamespace:
    return SimpleNamespace(_loop_writes=LoopWrites())


def _write(threads: list[str], seconds: float = 0.0):
    def fn() -> str:
        threads.append(threading.current_thread().name)
        if seconds:
            time.sleep(seconds)  # a blocking call, as an fsync on a slow disk is
        return "written"

    return fn


def test_writes_stay_on_the_loop_until_the_third_slow_one() -> None:
    async def main() -> list[str]:
        caller, threads = _caller(), []
        slow = _write(threads, ON_LOOP_MAX_S * 1.5)
        for n in range(1, ON_LOOP_SLOW_CALLS + 1):
            assert await StepBase._local_call(caller, slow) == "written"
            assert caller._loop_writes.slow == n
            assert caller._loop_writes.allowed is (n < ON_LOOP_SLOW_CALLS)
        # From now on every write of the run goes to a worker thread, quick or not.
        assert await StepBase._local_call(caller, _write(threads)) == "written"
        assert caller._loop_writes.allowed is False
        return threads

    loop_thread = threading.current_thread().name  # asyncio.run runs the loop here
    threads = asyncio.run(main())
    assert threads[:ON_LOOP_SLOW_CALLS] == [loop_thread] * ON_LOOP_SLOW_CALLS
    assert threads[-1].startswith("wanrecipe-offload-")


def test_one_slow_write_among_quick_ones_keeps_the_run_on_the_loop() -> None:
    async def main() -> list[str]:
        caller, threads = _caller(), []
        await StepBase._local_call(caller, _write(threads, ON_LOOP_MAX_S * 1.5))
        for _ in range(50):
            await StepBase._local_call(caller, _write(threads))
        assert caller._loop_writes.slow == 1 and caller._loop_writes.allowed
        return threads

    loop_thread = threading.current_thread().name
    assert set(asyncio.run(main())) == {loop_thread}


def test_a_write_that_would_wait_goes_to_a_thread_and_is_not_counted_slow() -> None:
    async def main() -> tuple[str, list[str]]:
        caller, threads = _caller(), []

        def quick() -> str:
            raise WouldWait("state.db")  # another writer holds the journal: nothing written

        got = await StepBase._local_call(caller, quick, _write(threads))
        assert caller._loop_writes.slow == 0 and caller._loop_writes.allowed
        return got, threads

    got, threads = asyncio.run(main())
    assert got == "written"
    assert len(threads) == 1 and threads[0].startswith("wanrecipe-offload-")
