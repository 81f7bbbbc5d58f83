"""Fixtures: a real emulator on 127.0.0.1 port 0, and a tiny recording server for the exact
wire shapes and the failure modes the emulator does not produce (gateway pages, stalls)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from wanrecipe.backends import DashScopeClient
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import RunningEmulator, running_emulator

from .backend_helpers import KEY, Recorder, Start, recording_server


@pytest.fixture(scope="session")
def engine_threads() -> Iterator[Executor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-engine")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def start(engine_threads: Executor) -> Start:
    """``async with start(latency=0.5, faults=...) as emu`` (no rate limits unless asked)."""

    def _start(**options: Any) -> AbstractAsyncContextManager[RunningEmulator]:
        options.setdefault("rps", 0)
        options.setdefault("query_qps", 0)
        options.setdefault("api_key", KEY)
        return running_emulator(EmulatorConfig(**options), executor=engine_threads)

    return _start


@pytest.fixture
async def emu(start: Start) -> AsyncIterator[RunningEmulator]:
    async with start() as running:
        yield running


@pytest.fixture
async def client(emu: RunningEmulator) -> AsyncIterator[DashScopeClient]:
    async with DashScopeClient(emu.base_url, KEY, timeout=10) as c:
        yield c


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    async with recording_server() as rec:
        yield rec
