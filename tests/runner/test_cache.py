"""Never pay twice: re-runs reuse stored results, seeds are drawn once, --force redoes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from wanrecipe.api import load_recipe
from wanrecipe.runner import BackendChoice, execute, with_dependants

from .conftest import fast_options
from .test_run import CHAIN, run


async def test_a_rerun_submits_nothing_and_gives_the_same_files(emulator, recipe_file):
    path = recipe_file(CHAIN)
    async with emulator() as emu:
        first = await run(path, emu)
        before = emu.stats()["submissions"]["attempts"]
        second = await run(path, emu)
        stats = emu.stats()
    assert first.status == second.status == "ok"
    assert stats["submissions"]["attempts"] == before == 3, "the re-run sent no submit"
    assert [s.state for s in second.steps.values()] == ["cached"] * 3
    assert second.images_billed == 0
    for sid, step in second.steps.items():
        assert step.key == first.steps[sid].key
        assert [r.sha256 for r in step.results] == [r.sha256 for r in first.steps[sid].results]
        data = (path.parent / "run" / step.results[0].path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == step.results[0].sha256


async def test_a_drawn_seed_is_reused_by_later_runs(emulator, recipe_file):
    path = recipe_file("""\
        version: 1
        name: s
        steps:
          a: {function: colorization, image: in.png, prompt: ""}
    """)
    async with emulator() as emu:
        first = await run(path, emu)
        again = await run(path, emu, no_cache=True)
    seed = first.steps["a"].seed
    assert seed is not None
    assert first.steps["a"].attempts[0].request["parameters"]["seed"] == seed
    assert again.steps["a"].seed == seed
    assert again.steps["a"].state == "done", "--no-cache submits again"


async def test_a_changed_input_runs_again_and_only_downstream(emulator, recipe_file, tmp_path):
    path = recipe_file(
        CHAIN.replace("prompt: a valley", "prompt: '{{ params.scene }}'").replace(
            "name: chain",
            "name: chain\n    params:\n      scene: {type: string, default: a valley}",
        )
    )
    async with emulator() as emu:
        await run(path, emu)
        recipe = load_recipe(path, {"scene": "a river"})
        record = await execute(
            recipe,
            backend=BackendChoice("url", emu.base_url),
            run_dir=tmp_path / "run2",
            options=fast_options(),
        )
    states = {k: s.state for k, s in record.steps.items()}
    assert states == {"colorize": "cached", "upscale": "cached", "widen": "done"}
    assert record.images_billed == 1


async def test_force_redoes_a_step_and_its_dependants(emulator, recipe_file, tmp_path):
    path = recipe_file(CHAIN)
    async with emulator() as emu:
        await run(path, emu)
        recipe = load_recipe(path)
        force = with_dependants(recipe, ["upscale"])
        record = await execute(
            recipe,
            backend=BackendChoice("url", emu.base_url),
            run_dir=tmp_path / "run2",
            options=fast_options(force=force),
        )
    assert force == {"upscale", "widen"}
    states = {k: s.state for k, s in record.steps.items()}
    assert states == {"colorize": "cached", "upscale": "done", "widen": "done"}


async def test_emulator_results_never_stand_in_for_the_services(emulator, recipe_file):
    from wanrecipe.executor.identity import step_key

    args = ("colorization", "", {"seed": 1}, {"base_image_url": "0" * 64})
    assert step_key(*args, realm="emulator") != step_key(*args, realm="dashscope")


def test_default_run_dirs_never_collide(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from wanrecipe.runner import default_run_dir

    monkeypatch.chdir(tmp_path)
    now = datetime(2026, 11, 26, 10, 15, 0, tzinfo=UTC)
    first = default_run_dir("r", now)
    assert first == Path("runs/r/20261126-101500")
    first.mkdir(parents=True)
    second = default_run_dir("r", now)
    assert second.name == "20261126-101500-2"
