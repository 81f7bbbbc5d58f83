"""Shared fixtures: one engine process pool per session, emulators on 127.0.0.1 port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from wanrecipe.emulator.app import make_executor
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import RunningEmulator, running_emulator


@pytest.fixture(scope="session")
def engine_pool() -> Iterator[Executor]:
    """One real process pool for the whole session (workers start once)."""
    pool = make_executor("process", 2)  # the emulator's own default pool
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def start(engine_pool: Executor) -> Callable[..., AbstractAsyncContextManager[RunningEmulator]]:
    """``async with start(rps=0, ...) as emu``: an emulator sharing the session's pool."""

    def _start(executor: Executor | None = None, **options: Any) -> Any:
        # Most tests submit and poll back to back; the quota tests opt back in.
        options.setdefault("rps", 0)
        options.setdefault("query_qps", 0)
        options.setdefault("engine_time_budget", 0.2)  # heavy engine steps take fast paths
        return running_emulator(EmulatorConfig(**options), executor=executor or engine_pool)

    return _start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
