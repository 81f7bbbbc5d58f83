"""The embedded emulator: started in this process (127.0.0.1, port 0) for a ``local`` run; from
then on just another base URL. Its engine workers are started early, while the CLI checks the
recipe, so the first task does not wait for their start and imports."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import CancelledError, Executor, Future
from typing import Any, TypeVar

from .choice import BackendChoice

T = TypeVar("T")


@contextlib.asynccontextmanager
async def open_backend(choice: BackendChoice) -> AsyncIterator[str]:
    """Yield the base URL to talk to, starting the embedded emulator for ``local``."""
    if choice.kind != "local":
        assert choice.base_url
        yield choice.base_url
        return
    from ..emulator.config import EmulatorConfig
    from ..emulator.server import running_emulator

    # The server starts now; its engine workers may still be starting (they are only needed
    # once a task computes, after the first submits were answered).
    engines = _PendingPool(_early_engines.take) if _early_engines.started else None
    try:
        async with running_emulator(EmulatorConfig(), executor=engines) as emu:
            yield emu.base_url
    finally:
        if engines is not None:  # ours, not the emulator's: shut it down here
            await asyncio.to_thread(engines.shutdown, True, cancel_futures=True)


class _PendingPool(Executor):
    """The early engine pool, as an executor usable before it has finished starting: a job
    submitted meanwhile is handed to it from a helper thread once it is up (the event loop
    never waits for the pool's start)."""

    def __init__(self, take: Callable[[], Executor | None]) -> None:
        self._take = take
        self._lock = threading.Lock()
        self._pool: Executor | None = None

    def _resolve(self) -> Executor:
        with self._lock:
            if self._pool is None:
                from ..emulator.app import make_executor
                from ..emulator.config import EmulatorConfig

                config = EmulatorConfig()
                self._pool = self._take() or make_executor(config.executor, config.workers)
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


class _EarlyEngines:
    """The embedded emulator's engine workers, started while the CLI checks the recipe (their
    start and imports take about a second), then handed to the emulator by open_backend."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pool: Any = None

    def start(self) -> None:
        if self._thread is not None:
            return
        # Imported here, not in the thread: two threads importing one package at once can
        # trip over its half-initialised parent.
        from ..emulator.app import make_executor
        from ..emulator.config import EmulatorConfig
        from ..emulator.server import running_emulator  # noqa: F401  (open_backend's, now)

        def run() -> None:
            config = EmulatorConfig()
            pool = make_executor(config.executor, config.workers)
            for _ in range(config.workers):
                pool.submit(_warm_engine)  # starts a worker process and loads the engines
            self._pool = pool

        self._thread = threading.Thread(target=run, name="wanrecipe-engines", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def take(self) -> Any:
        """The started pool (None if none was started); the caller owns it from now on."""
        if self._thread is None:
            return None
        self._thread.join()
        pool, self._pool, self._thread = self._pool, None, None
        return pool


_early_engines = _EarlyEngines()


def start_engines_early(choice: BackendChoice) -> None:
    """For the local backend: start the emulator's engine workers now, in the background, so
    the first task does not wait for them (the CLI calls this before checking the recipe)."""
    if choice.kind == "local":
        _early_engines.start()


def _warm_engine() -> None:
    from ..emulator import engines  # noqa: F401  (the imports the first task would pay)
