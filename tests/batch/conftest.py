"""Batch fixtures: a two-step recipe, pictures and rows files in tmp_path, real emulators."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from wanrecipe.emulator.app import make_executor
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import RunningEmulator, running_emulator
from wanrecipe.executor.polling import PollPolicy
from wanrecipe.executor.retry import RetryPolicy
from wanrecipe.executor.scheduler import RunOptions

RECIPE = """\
version: 1
name: tiny-batch
params:
  photo: {type: image, default: pics/p1.png}
  colors: {type: string, default: blue sky}
defaults: {seed: 7}
steps:
  color:
    function: colorization
    image: "{{ params.photo }}"
    prompt: "{{ params.colors }}"
  style:
    function: stylization_all
    image: "{{ steps.color.image }}"
    prompt: Convert to French picture book style
    parameters: {strength: 0.5}
outputs:
  final: "{{ steps.style.image }}"
"""


def make_image(path: Path, size: tuple[int, int] = (512, 512)) -> Path:
    """A small gradient picture with some structure (engines have something to work on)."""
    from PIL import Image

    w, h = size
    im = Image.new("RGB", size)
    px = im.load()
    assert px is not None
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 255) // w, (y * 255) // h, ((x // 32 + y // 32) % 2) * 200)
    im.save(path)
    return path


FAST = RunOptions(
    retry=RetryPolicy(base=0.05, cap=0.2, throttle_base=0.2, throttle_cap=1.0),
    poll=PollPolicy(prior_low=0.05, prior_high=2.0, early_checks=()),
    interrupt_grace_s=5.0,
)


def fast_options(**changes: Any) -> RunOptions:
    from dataclasses import replace

    return replace(FAST, **changes)


@pytest.fixture(scope="session")
def batch_pool() -> Iterator[Executor]:
    pool = make_executor("process", 2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def emulator(batch_pool: Executor) -> Callable[..., AbstractAsyncContextManager[RunningEmulator]]:
    def start(**options: Any) -> AbstractAsyncContextManager[RunningEmulator]:
        options.setdefault("engine_time_budget", 0.2)
        return running_emulator(EmulatorConfig(**options), executor=batch_pool)

    return start


@pytest.fixture
def batch_dir(tmp_path: Path) -> Callable[..., Path]:
    """``make(rows=N)``: recipe.yaml, pics/p1.png..pN.png and rows.csv (key,photo,colors)."""

    def make(rows: int = 3, recipe: str = RECIPE) -> Path:
        (tmp_path / "pics").mkdir(exist_ok=True)
        lines = ["key,photo,colors"]
        for i in range(1, rows + 1):
            make_image(tmp_path / "pics" / f"p{i}.png", (512, 512 + 8 * i))
            lines.append(f"r{i},pics/p{i}.png,colors {i}")
        (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        path = tmp_path / "recipe.yaml"
        path.write_text(textwrap.dedent(recipe), encoding="utf-8")
        return path

    return make
