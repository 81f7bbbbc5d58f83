"""Runner fixtures: real emulators on 127.0.0.1 port 0, recipes and images in tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from wanrecipe.emulator.app import make_executor
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import RunningEmulator, running_emulator
from wanrecipe.executor.polling import PollPolicy
from wanrecipe.executor.retry import RetryPolicy
from wanrecipe.executor.scheduler import RunOptions


@pytest.fixture(scope="session")
def runner_pool() -> Iterator[Executor]:
    pool = make_executor("process", 2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def emulator(runner_pool: Executor) -> Callable[..., AbstractAsyncContextManager[RunningEmulator]]:
    """``async with emulator(faults=..., latency=...) as emu``: the real server, quota as the
    service's unless a test says otherwise, engines on their fast paths."""

    def start(**options: Any) -> AbstractAsyncContextManager[RunningEmulator]:
        options.setdefault("engine_time_budget", 0.2)
        return running_emulator(EmulatorConfig(**options), executor=runner_pool)

    return start


#: Fast retries and a polling prior that fits the emulator's fast tasks, so tests take seconds.
FAST = RunOptions(
    retry=RetryPolicy(base=0.05, cap=0.2, throttle_base=0.2, throttle_cap=1.0),
    poll=PollPolicy(prior_low=0.05, prior_high=2.0, early_checks=()),
    interrupt_grace_s=5.0,
)


def fast_options(**changes: Any) -> RunOptions:
    from dataclasses import replace

    return replace(FAST, **changes)


def make_image(path: Path, size: tuple[int, int] = (512, 512), *, gray: bool = False) -> Path:
    """A small gradient picture with some structure (engines have something to work on)."""
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


@pytest.fixture
def recipe_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write a recipe (dedented YAML) with `in.png` (512x512) beside it."""
    make_image(tmp_path / "in.png")

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
