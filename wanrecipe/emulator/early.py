"""Engine workers started early, and an executor usable while they start.

Starting the process pool (the forkserver, then each worker importing numpy and OpenCV)
takes about a second; a server that waited for it would answer its first submit late.
:class:`EarlyEngines` starts the pool from a thread of its own; :class:`PendingPool` is the
executor the emulator is given meanwhile: a job submitted before the pool is up is handed to
it from a helper thread once it is, never on the event loop.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future
from typing import Any, TypeVar

from .pool import ENGINE_NICENESS

T = TypeVar("T")


class PendingPool(Executor):
    """An executor that becomes ``take()``'s pool: jobs submitted before that pool is up are
    relayed to it from a helper thread (the caller never waits for the pool's start)."""

    def __init__(self, take: Callable[[], Executor]) -> None:
        self._take = take
        self._lock = threading.Lock()
        self._pool: Executor | None = None

    def _resolve(self) -> Executor:
        with self._lock:
            if self._pool is None:
                self._pool = self._take()
            return self._pool

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        outer: Future[T] = Future()

        def relay() -> None:
            try:
                pool = self._resolve()
            except BaseException as exc:  # the pool could not start: the job fails with it
                if outer.set_running_or_notify_cancel():
                    outer.set_exception(exc)
                return
            if not outer.set_running_or_notify_cancel():
                return  # cancelled while the pool started
            inner = pool.submit(fn, *args, **kwargs)
            inner.add_done_callback(lambda done: _copy(done, outer))

        threading.Thread(target=relay, name="wanrecipe-engines-relay", daemon=True).start()
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._resolve().shutdown(wait, cancel_futures=cancel_futures)


def _copy(done: Future[T], outer: Future[T]) -> None:
    if done.cancelled():
        outer.set_exception(CancelledError())
    elif (exc := done.exception()) is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(done.result())


class EarlyEngines:
    """A process pool of ``workers`` engine workers, started from a thread of its own (at
    :meth:`start`, or by :meth:`take` at the latest), each worker loading the engines (the
    imports the first task would otherwise pay)."""

    def __init__(self, make: Callable[[], Executor], workers: int, *, start: bool = True) -> None:
        self._make = make
        self._workers = workers
        self._pool: Executor | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._start, name="wanrecipe-engines", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread.ident is None:
                self._thread.start()

    def _start(self) -> None:
        try:
            if sys.platform == "linux":
                # Per thread on Linux: the processes this thread starts (the forkserver, and
                # the workers it forks) inherit it; the server's own threads keep theirs.
                os.nice(ENGINE_NICENESS)
            pool = self._make()
            for _ in range(self._workers):
                pool.submit(warm_engine)  # starts a worker process and loads the engines
            self._pool = pool
        except BaseException as exc:  # raised again by take(), where the pool is needed
            self._error = exc

    def take(self) -> Executor:
        """The pool, once started (raises what stopped it from starting)."""
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._pool is not None
        return self._pool

    def pending(self) -> PendingPool:
        return PendingPool(self.take)


def warm_engine() -> None:
    """Load what the first ``engines.render`` call would (numpy, OpenCV, every engine)."""
    from . import engines
    from .engines import common, decode, encode  # noqa: F401

    engines._engines()
