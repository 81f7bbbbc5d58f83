"""`wanrecipe cache ls|gc|clear` and `plan`'s cache marks, on real runs against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wanrecipe.cli import main
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.store import StateDir

CHAIN = """\
    version: 1
    name: chain
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
"""


@pytest.fixture(autouse=True)
def _state_beside_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about the default: .wanrecipe/ beside the recipe (in tmp_path).
    monkeypatch.delenv("WANRECIPE_STATE_DIR", raising=False)


@pytest.fixture
def emu(runner_pool) -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2), executor=runner_pool) as server:
        yield server


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def run(recipe: Path, emu: EmulatorThread, *extra: str) -> Result:
    done = cli("run", str(recipe), "--base-url", emu.base_url,
               "--out", str(recipe.parent / "out"), *extra)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    return done


def plan_marks(recipe: Path, *extra: str) -> dict[str, dict[str, object]]:
    done = cli("plan", str(recipe), "--json", "--state-dir", str(recipe.parent / ".wanrecipe"),
               *extra)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    return {s["id"]: s["cache"] for level in json.loads(done.stdout)["levels"] for s in level}


def test_cache_ls_lists_attempts_per_step_and_flags_dangling_intents(emu, recipe_file):
    path = recipe_file(CHAIN)
    run(path, emu)
    with StateDir.open(path.parent / ".wanrecipe") as state:
        # What a run killed between its intent and the submit's answer leaves behind.
        state.journal.record_intent("d" * 64, step="side", recipe=str(path), backend="local",
                                    request={}, seed=1)  # fmt: skip
    listed = cli("cache", "ls", str(path))
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"{path} colorize: 1 attempt (1 done), 1 key, ")
    assert any(line.startswith(f"{path} side: 2 attempts (1 done, 1 intent), 2 keys, ")
               for line in lines)  # fmt: skip
    dangling = [line for line in lines if "DANGLING" in line]
    assert len(dangling) == 1 and "key dddddddddddd seed 1 task -" in dangling[0]
    assert "may have been billed" in dangling[0]
    # 2 images for 3 results: the emulator colorizes whatever the prompt, and the store keeps
    # identical bytes once.
    assert lines[-2].startswith("total: 4 attempts (3 done, 1 intent), 3 cached keys, 2 images")
    assert lines[-1].startswith("1 dangling intent: the next run of the recipe looks for")


def test_cache_gc_keeps_what_the_recipe_and_its_lock_use(emu, recipe_file, tmp_path):
    path = recipe_file(CHAIN)
    run(path, emu)
    run(path, emu, "-p", "scene=a river")  # a new colorize; the lock follows this run
    other = recipe_file(
        """\
        version: 1
        name: other
        steps:
          only:
            function: super_resolution
            image: in.png
            prompt: other
            parameters: {upscale_factor: 2, seed: 1}
        """,
        "other.yaml",
    )
    run(other, emu)
    with StateDir.open(path.parent / ".wanrecipe") as state:
        before = state.journal.attempts()
    # other.yaml's result goes; recipe.yaml's current results (scene=a valley) and its
    # lock's (scene=a river) stay.
    gc = cli("cache", "gc", str(path), "--keep-days", "0")
    assert gc.exit_code == 0, gc.output
    assert gc.stdout.startswith("removed 1 attempts and 1 images, freed "), gc.stdout
    with StateDir.open(path.parent / ".wanrecipe") as state:
        after = state.journal.attempts()
    assert [a.id for a in after] == [a.id for a in before if a.recipe == str(path)]
    assert {a.request["input"]["prompt"] for a in after if a.step == "colorize"} == {
        "a valley",
        "a river",
    }
    assert {m["status"] for m in plan_marks(path).values()} == {"cached"}
    assert {m["status"] for m in plan_marks(path, "-p", "scene=a river").values()} == {"cached"}
    again = cli("cache", "gc", str(path), "--keep-days", "0")
    assert again.stdout.startswith("removed 0 attempts and 0 images, freed 0 B")


def test_cache_gc_by_age_keeps_everything_young(emu, recipe_file):
    path = recipe_file(CHAIN)
    run(path, emu)
    gc = cli("cache", "gc", "--state-dir", str(path.parent / ".wanrecipe"), "--keep-days", "1")
    assert gc.stdout.startswith("removed 0 attempts and 0 images"), gc.output
    assert cli("cache", "gc", "--state-dir", str(path.parent)).exit_code == 2


def test_cache_clear_asks_first(emu, recipe_file):
    path = recipe_file(CHAIN)
    run(path, emu)
    declined = cli("cache", "clear", str(path), input="n\n")
    assert declined.exit_code == 1
    assert "Forget 3 cached results (" in declined.stdout
    assert plan_marks(path)["colorize"]["status"] == "cached"
    cleared = cli("cache", "clear", str(path), input="y\n")
    assert cleared.exit_code == 0
    assert cleared.stdout.splitlines()[-1].startswith("removed 3 attempts and 2 images, freed ")
    assert plan_marks(path)["colorize"] == {**plan_marks(path)["colorize"], "status": "run"}


def test_plan_marks_cached_steps_and_says_why_others_run(emu, recipe_file):
    path = recipe_file(CHAIN)
    state_dir = str(path.parent / ".wanrecipe")
    missing = cli("plan", str(path), "--state-dir", state_dir)
    assert missing.exit_code == 2 and "no state directory at" in missing.stderr
    StateDir.open(path.parent / ".wanrecipe").close()
    fresh = plan_marks(path)
    assert {s: m["status"] for s, m in fresh.items()} == {
        "colorize": "run", "upscale": "run", "side": "run"
    }  # fmt: skip
    assert fresh["colorize"]["reason"] == "never run"
    assert fresh["upscale"]["reason"] == "after colorize, which will run first"
    run(path, emu)
    cached = plan_marks(path)
    assert {m["status"] for m in cached.values()} == {"cached"}
    with StateDir.open(path.parent / ".wanrecipe") as state:
        keys = {a.step: a.key for a in state.journal.attempts()}
    assert {s: m["key"] for s, m in cached.items()} == keys, "the scheduler's keys, exactly"
    text = cli("plan", str(path), "--state-dir", state_dir).stdout
    assert text.endswith("3 cached: 0 billed images, est. $0.000000\n"), text
    assert "  upscale          cached     result of task " in text
    changed = plan_marks(path, "-p", "scene=a river")
    assert changed["colorize"] == {**changed["colorize"], "status": "run",
                                   "reason": "prompt changed"}  # fmt: skip
    assert changed["upscale"]["status"] == "run" and changed["side"]["status"] == "cached"
    (path.parent / "in.png").write_bytes((path.parent / "in.png").read_bytes() + b"\0")
    touched = plan_marks(path)
    assert touched["side"]["reason"] == "an input image changed (in.png)"
