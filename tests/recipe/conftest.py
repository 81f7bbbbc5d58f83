from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """Write a dedented recipe into tmp_path; returns its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """Write a small real image file into tmp_path."""

    def make(name: str = "in.png", size: tuple[int, int] = (600, 520), mode: str = "RGB") -> Path:
        path = tmp_path / name
        Image.new(mode, size, "white").save(path)
        return path

    return make
