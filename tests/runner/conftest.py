"""Runner fixtures: real emulators on 127.0.0.1 port 0, recipes and images in tmp_path (the
shared pieces are in tests/runs.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import pytest

from tests.runs import FAST, emulator, fast_options, make_image

__all__ = ["FAST", "emulator", "fast_options", "make_image"]


@pytest.fixture(scope="session")
def runner_pool(engine_pool: Executor) -> Executor:
    """The session's engine pool, under the name the runner tests use."""
    return engine_pool


@pytest.fixture
def recipe_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write a recipe (dedented YAML) with `in.png` (512x512) beside it."""
    make_image(tmp_path / "in.png")

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
