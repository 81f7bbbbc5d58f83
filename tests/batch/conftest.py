"""Batch fixtures: a two-step recipe, pictures and rows files in tmp_path, real emulators (the
shared pieces are in tests/runs.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runs import FAST, emulator, fast_options, make_image

__all__ = ["FAST", "RECIPE", "emulator", "fast_options", "make_image"]

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
