"""Contract: every recipe in recipes/ runs end to end on the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runs import run_ok
from wanrecipe.api import load_recipe

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_there_are_examples():
    assert len(RECIPES) >= 13


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
async def test_example_runs_end_to_end(emulator, path, tmp_path):
    record, stats = await run_ok(emulator, load_recipe(path), tmp_path)
    assert stats["tasks"]["peak_running"] <= 2
    for step in record.steps.values():
        assert step.results, step.id
        for result in step.results:
            assert (tmp_path / "run" / result.path).stat().st_size == result.size
    for name, files in record.outputs.items():
        assert files and all(Path(f).exists() for f in files), name
