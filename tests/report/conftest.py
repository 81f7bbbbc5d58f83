"""Report fixtures: one emulator per module (real server on 127.0.0.1) and one headless
Chromium per module (Debian's, never downloaded)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

import pytest

from wanrecipe.emulator.app import make_executor
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

from .browser import BrowserUnavailable, chromium


@pytest.fixture(scope="session")
def report_pool() -> Iterator[Executor]:
    pool = make_executor("process", 2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def emu(report_pool: Executor) -> Iterator[EmulatorThread]:
    """One emulator for a module's runs (real server on 127.0.0.1, fast engine paths)."""
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2), executor=report_pool) as e:
        yield e


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        with chromium() as driver:
            yield driver
    except BrowserUnavailable as exc:
        pytest.skip(f"headless Chromium cannot start here: {exc}")
