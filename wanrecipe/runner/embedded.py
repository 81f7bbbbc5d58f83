"""The embedded emulator: started in this process (127.0.0.1, port 0) for a ``local`` run; from
then on just another base URL. Its engine workers are started early, while the CLI checks the
recipe, so the first task does not wait for their start and imports."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from .choice import BackendChoice


@contextlib.asynccontextmanager
async def open_backend(choice: BackendChoice) -> AsyncIterator[str]:
    """Yield the base URL to talk to, starting the embedded emulator for ``local``."""
    if choice.kind != "local":
        assert choice.base_url
        yield choice.base_url
        return
    from ..emulator.config import EmulatorConfig
    from ..emulator.server import running_emulator

    engines = await asyncio.to_thread(_early_engines.take)
    try:
        async with running_emulator(EmulatorConfig(), executor=engines) as emu:
            yield emu.base_url
    finally:
        if engines is not None:  # ours, not the emulator's: shut it down here
            await asyncio.to_thread(engines.shutdown, True, cancel_futures=True)


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
