"""``wanrecipe verify RUN_DIR``: a run checked from its record alone, whoever made it (the
Python API writes no lock file), and ``verify RECIPE`` beside it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wanrecipe import run_recipe
from wanrecipe.cli import main
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.report.lock import lock_path
from wanrecipe.runner import BackendChoice

RECIPE = """\
    version: 1
    name: checked
    steps:
      colorize: {function: colorization, image: in.png, prompt: blue sky}
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: sharper
        parameters: {n: 2}
      side: {function: colorization, image: in.png, prompt: side, parameters: {seed: 7}}
"""


@pytest.fixture
def emu(runner_pool) -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2), executor=runner_pool) as server:
        yield server


def verify(*args: str) -> Result:
    return CliRunner().invoke(main, ["verify", *args], catch_exceptions=False)


def api_run(recipe: Path, emu: EmulatorThread, out: Path) -> None:
    record = run_recipe(recipe, backend=BackendChoice("url", emu.base_url), run_dir=out)
    assert record.status == "ok"


def replace(path: Path, data: bytes) -> None:
    """Outputs are hard links to the store's read-only blobs: replace, never edit in place."""
    path.unlink()
    path.write_bytes(data)


def test_a_python_api_run_verifies_from_its_record(emu, recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    api_run(path, emu, tmp_path / "out")
    assert not lock_path(path).exists(), "the API writes no lock file"
    ok = verify(str(tmp_path / "out"))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines() == [
        "ok   colorize: colorize.png",
        "ok   upscale: upscale.png, upscale-2.png",
        "ok   side: side.png",
        "all 3 steps intact (4 files checked against run.json)",
    ]
    # run.json itself names the same directory.
    assert verify(str(tmp_path / "out" / "run.json")).stdout == ok.stdout


def test_verify_run_dir_names_each_damaged_step(emu, recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    out = tmp_path / "out"
    api_run(path, emu, out)
    (out / "upscale-2.png").unlink()
    side = (out / "side.png").read_bytes()
    replace(out / "side.png", bytes([side[0] ^ 1]) + side[1:])  # same size, other bytes
    replace(out / "colorize.png", b"short")
    bad = verify(str(out))
    assert bad.exit_code == 1, bad.output
    lines = bad.stdout.splitlines()
    assert lines[0].startswith("FAIL colorize: colorize.png: 5 bytes, run.json says "), lines
    assert lines[1] == "FAIL upscale: upscale-2.png: missing", lines
    assert lines[2] == "FAIL side: side.png: changed (sha256 differs from run.json)", lines
    assert lines[3] == "3 of 3 steps with missing or damaged outputs"


def test_verify_run_dir_reports_steps_without_outputs(recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    config = EmulatorConfig(engine_time_budget=0.2, faults="task.inspection=first:1")
    with EmulatorThread(config) as failing:
        record = run_recipe(
            path, backend=BackendChoice("url", failing.base_url), run_dir=tmp_path / "out"
        )
    assert record.status == "failed"
    states = {sid: step.state for sid, step in record.steps.items()}
    assert sorted(states.values()) in (["done", "failed", "skipped"], ["done", "done", "failed"])
    done = verify(str(tmp_path / "out"))
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    for sid, state in states.items():
        if state == "done":
            assert any(line.startswith(f"ok   {sid}: ") for line in lines), lines
        else:
            assert f"--   {sid}: {state} in this run: no outputs to check" in lines, lines
    intact = sum(1 for s in states.values() if s == "done")
    files = sum(len(s.results) for s in record.steps.values())
    assert lines[-1] == (
        f"all {intact} step{'s' if intact != 1 else ''} with outputs intact ({files} file"
        f"{'s' if files != 1 else ''} checked against run.json); the run itself failed"
    )


def test_verify_refuses_what_is_not_a_run_directory(tmp_path):
    nothing = verify(str(tmp_path / "runs" / "nothing"))
    assert nothing.exit_code == 2
    assert "does not exist: name a run directory" in nothing.output
    empty = verify(str(tmp_path))
    assert empty.exit_code == 2
    assert f"{tmp_path} has no run.json" in empty.output
    (tmp_path / "run.json").write_text("{not json", encoding="utf-8")
    broken = verify(str(tmp_path))
    assert broken.exit_code == 2
    assert "run.json is not a run record" in broken.output
    (tmp_path / "run.json").write_text(
        json.dumps({"version": 1, "steps": {"a": {"state": "done", "results": [
            {"path": "../../etc/passwd", "sha256": "0" * 64, "size": 1}]}}}),
        encoding="utf-8",
    )  # fmt: skip
    escaping = verify(str(tmp_path))
    assert escaping.exit_code == 1
    assert "FAIL a: ../../etc/passwd: outside the run directory" in escaping.stdout
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nsteps:\n  a: {function: colorization, image: x.png}\n")
    nolock = verify(str(recipe))
    assert nolock.exit_code == 2
    assert "no lock file" in nolock.output


def test_a_batch_run_directory_verifies_every_row(emu, recipe_file, tmp_path):
    # The batch record's shape is the contract between the batch runner and its readers: a
    # top-level run.json of kind "batch" whose rows name their own run directories.
    path = recipe_file(RECIPE)
    batch = tmp_path / "batch"
    for key in ("r1", "r2"):
        api_run(path, emu, batch / key)
    rows = [
        {"key": "r1", "index": 0, "status": "ok", "dir": "r1"},
        {"key": "r2", "index": 1, "status": "ok", "dir": "r2"},
        {"key": "r3", "index": 2, "status": "skipped", "dir": None},
    ]
    (batch / "run.json").write_text(
        json.dumps({"version": 1, "kind": "batch", "status": "ok", "rows": rows}),
        encoding="utf-8",
    )
    ok = verify(str(batch))
    assert ok.exit_code == 0, ok.output
    assert "row r1: all 3 steps intact (4 files checked against run.json)" in ok.stdout
    assert "row r2: all 3 steps intact (4 files checked against run.json)" in ok.stdout
    assert "row r3: skipped, nothing to check" in ok.stdout
    assert ok.stdout.splitlines()[-1] == "all 2 rows intact"
    (batch / "r2" / "side.png").unlink()
    bad = verify(str(batch))
    assert bad.exit_code == 1
    assert "row r2: FAIL side: side.png: missing" in bad.stdout
    assert bad.stdout.splitlines()[-1] == "1 of 2 rows with missing or damaged outputs"
