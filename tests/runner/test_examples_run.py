"""Contract: every recipe in recipes/ runs end to end on the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from wanrecipe.api import load_recipe
from wanrecipe.runner import BackendChoice, execute

from .conftest import fast_options

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_there_are_examples():
    assert len(RECIPES) >= 13


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
async def test_example_runs_end_to_end(emulator, path, tmp_path):
    recipe = load_recipe(path)
    async with emulator() as emu:
        record = await execute(
            recipe, backend=BackendChoice("url", emu.base_url), run_dir=tmp_path / "run",
            options=fast_options(), state_dir=tmp_path / "state",
        )  # fmt: skip
        stats = emu.stats()
    assert record.status == "ok", {k: s.error for k, s in record.steps.items()}
    assert stats["tasks"]["peak_running"] <= 2
    for step in record.steps.values():
        assert step.results, step.id
        for result in step.results:
            assert (tmp_path / "run" / result.path).stat().st_size == result.size
    for name, files in record.outputs.items():
        assert files and all(Path(f).exists() for f in files), name
