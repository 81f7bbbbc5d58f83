"""The recipe's ``outputs:`` on every surface, whether its steps ran or came from the cache:
``RunRecord.outputs``, ``run.json``, the ``run_finished`` event and the CLI's summary."""

from __future__ import annotations

import json
from pathlib import Path

from wanrecipe.api import load_recipe
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.report.events import Event
from wanrecipe.runner import BackendChoice, execute

from .conftest import fast_options
from .test_cli_run import wanrecipe

RECIPE = """\
    version: 1
    name: outs
    params:
      scene: {type: string, default: a valley}
    steps:
      colorize: {function: colorization, image: in.png, prompt: blue sky}
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: sharper
        parameters: {n: 2}
      widen:
        function: expand
        image: "{{ steps.upscale.image }}"
        prompt: "{{ params.scene }}"
        parameters: {left_scale: 1.5}
    outputs:
      colorized: "{{ steps.colorize.image }}"
      upscaled: "{{ steps.upscale.images }}"
      final: "{{ steps.widen.image }}"
"""


async def _run(path: Path, emu, run_dir: Path, params=None):
    events: list[Event] = []
    record = await execute(
        load_recipe(path, params),
        backend=BackendChoice("url", emu.base_url),
        run_dir=run_dir,
        options=fast_options(),
        on_event=events.append,
    )
    return record, events


def _surfaces(record, events, run_dir: Path) -> tuple[dict, dict, dict]:
    finished = [e for e in events if e.kind == "run_finished"]
    assert len(finished) == 1
    on_disk = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return record.outputs, on_disk["outputs"], finished[0].data["outputs"]


def _expected(run_dir: Path) -> dict[str, list[str]]:
    return {
        "colorized": [str(run_dir / "colorize.png")],
        "upscaled": [str(run_dir / "upscale.png"), str(run_dir / "upscale-2.png")],
        "final": [str(run_dir / "widen.png")],
    }


async def test_a_fully_cached_run_reports_every_output(emulator, recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    async with emulator() as emu:
        first, first_events = await _run(path, emu, tmp_path / "one")
        second, events = await _run(path, emu, tmp_path / "two")
    assert [s.state for s in second.steps.values()] == ["cached"] * 3
    assert _surfaces(first, first_events, tmp_path / "one") == (_expected(tmp_path / "one"),) * 3
    for surface in _surfaces(second, events, tmp_path / "two"):
        assert surface == _expected(tmp_path / "two")
    for paths in second.outputs.values():
        assert all(Path(p).is_file() for p in paths)


async def test_a_partly_cached_run_reports_the_cached_steps_outputs(
    emulator, recipe_file, tmp_path
):
    path = recipe_file(RECIPE)
    async with emulator() as emu:
        await _run(path, emu, tmp_path / "one")
        record, events = await _run(path, emu, tmp_path / "two", {"scene": "a river"})
    states = {k: s.state for k, s in record.steps.items()}
    assert states == {"colorize": "cached", "upscale": "cached", "widen": "done"}
    for surface in _surfaces(record, events, tmp_path / "two"):
        assert surface == _expected(tmp_path / "two")


def test_the_cli_prints_outputs_of_a_cached_run(recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
        runs = [
            wanrecipe("run", str(path), "--base-url", emu.base_url, "--out", out, cwd=tmp_path)
            for out in ("one", "two")
        ]
    for done in runs:
        assert done.returncode == 0, done.stderr
    second = runs[1].stderr
    assert "output final: two/widen.png" in second, second
    assert "output colorized: two/colorize.png" in second, second
    assert "output upscaled: two/upscale.png, two/upscale-2.png" in second, second
