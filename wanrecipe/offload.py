"""``offload(fn, *args)``: run a short blocking call (an fsync, a rename) on a worker thread.

What ``asyncio.to_thread`` does, for the hot path of a run (the intent's fsync, a download
into the store: two calls per task), with less machinery: a few daemon threads share one
``SimpleQueue`` (a C queue: no Condition, no Semaphore, no concurrent.futures.Future), and a
worker hands the outcome straight to the caller's asyncio future through
``call_soon_threadsafe``. That halves the GIL hand-offs of a call. As with ``to_thread``, a
caller that is cancelled does not stop the call; its outcome is dropped. Context variables
are not copied (nothing on these paths reads them).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

#: Worker threads: enough for a few fsyncs at once (each waits on the disk, not the CPU); as
#: many as the default executor of a 2-core machine.
WORKERS = 6

_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]
_jobs: SimpleQueue[_Job] = SimpleQueue()
_started = 0
_start_lock = threading.Lock()


async def offload(fn: Callable[..., T], /, *args: Any) -> T:
    """``fn(*args)`` on a worker thread; its result or exception here."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _ensure_workers()
    _jobs.put((loop, future, fn, args))
    return await future


def _ensure_workers() -> None:
    global _started
    if _started >= WORKERS:
        return
    with _start_lock:
        while _started < WORKERS:
            threading.Thread(
                target=_work, name=f"wanrecipe-offload-{_started}", daemon=True
            ).start()
            _started += 1


def _work() -> None:
    while True:
        loop, future, fn, args = _jobs.get()
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the caller, as to_thread does
            _settle(loop, future, None, exc)
        else:
            _settle(loop, future, result, None)
        del loop, future, fn, args  # nothing of a finished job stays referenced here


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the caller was cancelled: its outcome is dropped
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
        loop.call_soon_threadsafe(settle)
