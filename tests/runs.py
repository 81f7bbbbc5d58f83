"""What the tests that run recipes share (tests/batch, tests/runner): one engine pool per
session, the emulator factory over it, fast run options and a test picture.

Fixtures are defined here once and imported by those directories' conftest.py. Under
pytest-xdist a session fixture lives once per worker process, so every worker has its own
engine pool and its emulators listen on ports of their own (port 0).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from wanrecipe.emulator.app import make_executor
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import RunningEmulator, running_emulator
from wanrecipe.executor.polling import PollPolicy
from wanrecipe.executor.retry import RetryPolicy
from wanrecipe.executor.scheduler import RunOptions
from wanrecipe.report.record import RunRecord

#: Fast retries and a polling prior that fits the emulator's fast tasks, so tests take seconds.
FAST = RunOptions(
    retry=RetryPolicy(base=0.05, cap=0.2, throttle_base=0.2, throttle_cap=1.0),
    poll=PollPolicy(prior_low=0.05, prior_high=2.0, early_checks=()),
    interrupt_grace_s=5.0,
)


def fast_options(**changes: Any) -> RunOptions:
    return replace(FAST, **changes)


def make_image(path: Path, size: tuple[int, int] = (512, 512), *, gray: bool = False) -> Path:
    """A small gradient picture with some structure (engines have something to work on)."""
    from PIL import Image

    w, h = size
    im = Image.new("RGB", size)
    px = im.load()
    assert px is not None
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 255) // w, (y * 255) // h, ((x // 32 + y // 32) % 2) * 200)
    if gray:
        im = im.convert("L")
    im.save(path)
    return path


@pytest.fixture(scope="session")
def engine_pool() -> Iterator[Executor]:
    """The engines' worker processes, started once per session (per xdist worker)."""
    pool = make_executor("process", 2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def emulator(engine_pool: Executor) -> Callable[..., AbstractAsyncContextManager[RunningEmulator]]:
    """``async with emulator(faults=..., latency=...) as emu``: the real server, quota as the
    service's unless a test says otherwise, engines on their fast paths."""

    def start(**options: Any) -> AbstractAsyncContextManager[RunningEmulator]:
        options.setdefault("engine_time_budget", 0.2)
        return running_emulator(EmulatorConfig(**options), executor=engine_pool)

    return start


#: The environment of a user's own Python process: no key, backend or state dir of ours.
USER_ENV = {
    **{
        k: v
        for k, v in os.environ.items()
        if k != "DASHSCOPE_API_KEY" and not k.startswith("WANRECIPE_")
    },
    "NO_PROXY": "127.0.0.1,localhost",
    "PYTHONUNBUFFERED": "1",
}


def run_python(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd`` as a user would start it (this interpreter, USER_ENV), its
    output captured as text; the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def run_ok(
    emulator: Callable[..., AbstractAsyncContextManager[RunningEmulator]],
    recipe: Any,
    where: Path,
    **options: Any,
) -> tuple[RunRecord, dict[str, Any]]:
    """Run a loaded recipe to the end on a fresh emulator (run dir ``where/run``, state dir
    ``where/state``, fast options); check it ended ok; return its record and the emulator's
    stats."""
    from wanrecipe.runner import BackendChoice, execute

    async with emulator() as emu:
        record = await execute(
            recipe, backend=BackendChoice("url", emu.base_url), run_dir=where / "run",
            options=fast_options(**options), state_dir=where / "state",
        )  # fmt: skip
        stats = emu.stats()
    assert record.status == "ok", {k: s.error for k, s in record.steps.items()}
    return record, stats
