"""The lock file, `run --locked` and `verify`; step keys as properties."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from wanrecipe.cli import main
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.executor.identity import step_key
from wanrecipe.report.lock import lock_path, read_lock

from .conftest import make_image

RECIPE = """\
    version: 1
    name: locked
    params:
      scene: {type: string, default: a valley}
    steps:
      colorize: {function: colorization, image: in.png, prompt: "{{ params.scene }}"}
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: sharper
        parameters: {upscale_factor: 2}
      side: {function: colorization, image: in.png, prompt: side, parameters: {seed: 7}}
    outputs:
      final: "{{ steps.upscale.image }}"
"""


@pytest.fixture
def emu(runner_pool) -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2), executor=runner_pool) as server:
        yield server


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run(recipe: Path, emu: EmulatorThread, out: str, *extra: str) -> Result:
    return cli("run", str(recipe), "--base-url", emu.base_url,
               "--out", str(recipe.parent / out), *extra)  # fmt: skip


def submits(emu: EmulatorThread) -> int:
    return int(emu.stats()["submissions"]["accepted"])


def test_the_lock_names_what_made_each_result(emu, recipe_file):
    path = recipe_file(RECIPE)
    done = run(path, emu, "out")
    assert done.exit_code == 0, done.stderr
    lock = yaml.safe_load(lock_path(path).read_text())
    assert lock_path(path) == path.parent / "recipe.lock"
    assert list(lock) == ["version", "recipe", "params", "images", "cost_usd", "steps"]
    assert list(lock["steps"]) == ["colorize", "upscale", "side"]
    record = yaml.safe_load((path.parent / "out" / "run.json").read_text())
    colorize, upscale = lock["steps"]["colorize"], lock["steps"]["upscale"]
    assert colorize["prompt"] == "a valley"
    assert colorize["parameters"]["seed"] == record["steps"]["colorize"]["seed"]
    assert lock["steps"]["side"]["parameters"] == {"seed": 7}
    assert upscale["parameters"] == {"seed": upscale["parameters"]["seed"], "upscale_factor": 2}
    image = (path.parent / "in.png").read_bytes()
    assert colorize["inputs"]["base_image_url"] == {
        "source": "in.png", "sha256": hashlib.sha256(image).hexdigest(), "size": len(image),
        "width": 512, "height": 512,
    }  # fmt: skip
    # The upscale's input is the colorize output, by its bytes.
    assert upscale["inputs"]["base_image_url"]["source"] == "steps.colorize"
    assert upscale["inputs"]["base_image_url"]["sha256"] == colorize["outputs"][0]["sha256"]
    out = upscale["outputs"][0]
    data = (path.parent / "out" / out["file"]).read_bytes()
    assert (out["sha256"], out["size"], out["width"]) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        1024,
    )
    for sid, step in lock["steps"].items():
        assert step["key"] == record["steps"][sid]["key"]
        assert step["task_id"] == record["steps"][sid]["attempts"][0]["task_id"]
        assert step["backend"] == f"url:127.0.0.1:{emu.port}"
        assert step["cost_usd"] == "0.020070"
    assert lock["images"] == 3 and lock["cost_usd"] == "0.060210"
    text = lock_path(path).read_text()
    assert "Expires" not in text and "Signature" not in text and "data:" not in text


def test_a_locked_rerun_writes_a_byte_identical_lock_and_submits_nothing(emu, recipe_file):
    path = recipe_file(RECIPE)
    assert run(path, emu, "out").exit_code == 0
    first = lock_path(path).read_bytes()
    before = submits(emu)
    again = run(path, emu, "out2", "--locked")
    assert again.exit_code == 0, again.stderr
    assert submits(emu) == before
    assert lock_path(path).read_bytes() == first, "cached steps keep the task that made them"


def test_locked_replays_the_seeds_after_the_cache_is_gone(emu, recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    assert run(path, emu, "out").exit_code == 0
    locked = read_lock(lock_path(path))
    assert cli("cache", "clear", str(path), "--yes").exit_code == 0
    again = run(path, emu, "out2", "--locked")
    assert again.exit_code == 0, again.stderr
    replayed = read_lock(lock_path(path))
    for sid, step in locked.steps.items():
        assert replayed.steps[sid].parameters == step.parameters
        # The emulator is deterministic for a seed: the same request gives the same pixels.
        assert replayed.steps[sid].outputs == step.outputs
        assert replayed.steps[sid].task_id != step.task_id, "a new task made it"


def test_locked_refuses_a_changed_recipe_before_any_request(emu, recipe_file):
    path = recipe_file(RECIPE)
    assert run(path, emu, "out").exit_code == 0
    before = submits(emu)
    changed = path.read_text().replace("prompt: sharper", "prompt: crisper")
    path.write_text(changed.replace("{seed: 7}", "{seed: 8}"))
    refused = run(path, emu, "out2", "--locked")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[:3] == [
        f"error: {path} no longer matches recipe.lock:",
        "  step upscale: prompt is 'crisper', the lock has 'sharper'",
        "  step side: seed is 8, the lock has 7",
    ]
    assert submits(emu) == before


def test_locked_refuses_a_changed_input_image_and_a_param(emu, recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    assert run(path, emu, "out").exit_code == 0
    make_image(tmp_path / "in.png", (640, 512))
    refused = cli("run", str(path), "--base-url", emu.base_url, "--locked", "-p", "scene=x")
    assert refused.exit_code == 2
    lines = refused.stderr.splitlines()
    assert "  step colorize: prompt is 'x', the lock has 'a valley'" in lines
    assert any(line.startswith("  step colorize: image in.png changed (sha256 ") for line in lines)
    assert any(line.startswith("  step side: image in.png changed") for line in lines)


def test_locked_without_a_lock_file_is_a_usage_error(emu, recipe_file):
    path = recipe_file(RECIPE)
    refused = run(path, emu, "out", "--locked")
    assert refused.exit_code == 2
    assert "no lock file" in refused.stderr and "without --locked" in refused.stderr
    assert submits(emu) == 0


def test_a_failed_step_keeps_its_previous_lock_entry(runner_pool, recipe_file):
    path = recipe_file(RECIPE)
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2), executor=runner_pool) as emu:
        assert run(path, emu, "out").exit_code == 0
    first = read_lock(lock_path(path))
    config = EmulatorConfig(engine_time_budget=0.2, faults="task.inspection=1")
    with EmulatorThread(config, executor=runner_pool) as emu:
        failed = run(path, emu, "out2", "--force", "side")
    assert failed.exit_code == 1
    assert read_lock(lock_path(path)).steps == first.steps


def test_verify_checks_the_store_and_the_run_directory(emu, recipe_file):
    path = recipe_file(RECIPE)
    assert run(path, emu, "out").exit_code == 0
    ok = cli("verify", str(path), "--run-dir", str(path.parent / "out"))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines() == [
        "ok   colorize: colorize.png (store and run directory)",
        "ok   upscale: upscale.png (store and run directory)",
        "ok   side: side.png (store and run directory)",
        "all 3 steps intact",
    ]
    (path.parent / "out" / "upscale.png").unlink()
    damaged = path.parent / "out" / "side.png"
    damaged.unlink()  # a hard link to the store's read-only blob: replace, do not edit
    damaged.write_bytes(b"\x89PNG not really")
    bad = cli("verify", str(path), "--run-dir", str(path.parent / "out"))
    assert bad.exit_code == 1
    assert "FAIL upscale: upscale.png: missing from the run directory" in bad.stdout
    assert "FAIL side: side.png: 15 bytes in the run directory, the lock says" in bad.stdout
    assert "2 of 3 steps with missing or damaged outputs" in bad.stdout
    store_only = cli("verify", str(path))
    assert store_only.exit_code == 0


# -- step keys -------------------------------------------------------------------------------

_values = st.one_of(
    st.integers(-(2**31), 2**31), st.booleans(), st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != 0),
)  # fmt: skip
_params = st.dictionaries(st.sampled_from(["n", "strength", "upscale_factor", "top_scale"]),
                          _values, max_size=4)  # fmt: skip
_digest = st.text("0123456789abcdef", min_size=64, max_size=64)


@settings(max_examples=60, deadline=None)
@given(_params, _digest, _digest, st.integers(0, 2**31 - 1), st.randoms(use_true_random=False))
def test_step_keys_ignore_order_and_follow_every_input(params, image, mask, seed, rnd):
    inputs = {"base_image_url": image, "mask_image_url": mask}
    key = step_key("description_edit", "a cat", {**params, "seed": seed}, inputs)
    shuffled = list({**params, "seed": seed}.items())
    rnd.shuffle(shuffled)
    assert step_key("description_edit", "a cat", dict(shuffled),
                    dict(reversed(inputs.items()))) == key  # fmt: skip
    assert step_key("description_edit", "a cat", {**params, "seed": seed + 1}, inputs) != key
    assert step_key("description_edit", "a dog", {**params, "seed": seed}, inputs) != key
    assert step_key("stylization_all", "a cat", {**params, "seed": seed}, inputs) != key
    other = "0" * 64 if image != "0" * 64 else "1" * 64
    assert step_key("description_edit", "a cat", {**params, "seed": seed},
                    {**inputs, "base_image_url": other}) != key  # fmt: skip
    assert step_key("description_edit", "a cat", {**params, "seed": seed},
                    {"base_image_url": image}) != key  # fmt: skip
    assert step_key("description_edit", "a cat", {**params, "seed": seed}, inputs,
                    realm="emulator") != key  # fmt: skip


def test_locked_refuses_steps_the_lock_does_not_know(emu, recipe_file):
    path = recipe_file(RECIPE)
    assert run(path, emu, "out").exit_code == 0
    extra = "  extra: {function: colorization, image: in.png, prompt: x}\noutputs:"
    text = path.read_text().replace("\noutputs:", "\n" + extra)
    path.write_text(text.replace("side: {function", "other: {function"))
    refused = run(path, emu, "out2", "--locked")
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[1:4] == [
        "  step side: in the lock but no longer in the recipe",
        "  step other: not in the lock (it had not finished when the lock was written); "
        "run without --locked",
        "  step extra: not in the lock (it had not finished when the lock was written); "
        "run without --locked",
    ]


def test_plan_marks_count_a_templated_n_downstream(tmp_path):
    from wanrecipe.api import load_recipe
    from wanrecipe.executor.preview import billed, cache_preview
    from wanrecipe.store import StateDir

    make_image(tmp_path / "in.png")
    path = tmp_path / "n.yaml"
    path.write_text(
        "version: 1\nname: n\nparams:\n  count: {type: integer, default: 3}\nsteps:\n"
        "  a: {function: colorization, image: in.png, prompt: ''}\n"
        "  b:\n    function: colorization\n    image: '{{ steps.a.image }}'\n    prompt: ''\n"
        "    parameters: {n: '{{ params.count }}'}\n"
    )
    with StateDir.open(tmp_path / "state") as state:
        marks = cache_preview(load_recipe(path), state.journal, "emulator")
    assert marks["b"].status == "run" and marks["b"].billed_images == 3
    assert billed(marks) == 4
