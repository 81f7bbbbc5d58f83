"""The CLI's closing lines, word for word: what a run cost (free on an emulator, money spent on
DashScope) and paths relative to the working directory where they are under it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from wanrecipe import wire
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

from .test_cli_run import ENV as CLI_ENV

#: The state directory beside the recipe (the default), whatever the environment says.
ENV = {k: v for k, v in CLI_ENV.items() if k != "WANRECIPE_STATE_DIR"}

RECIPE = """\
    version: 1
    name: cost
    steps:
      a: {function: colorization, image: in.png, prompt: ""}
      b: {function: colorization, image: "{{ steps.a.image }}", prompt: blue sky}
"""
TWO = f"${wire.PRICE_PER_IMAGE_USD * 2}"  # $0.040140


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""):
    return subprocess.run(
        [sys.executable, "-m", "wanrecipe", *args],
        cwd=cwd,
        env=env or ENV,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=240,
    )


def summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("run ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_an_embedded_emulator_run_says_it_was_free(recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    first = run_cli("run", path.name, "--out", "one", cwd=tmp_path)
    again = run_cli("run", path.name, "--out", "two", cwd=tmp_path)
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert re.fullmatch(
        rf"run ok in \d+\.\ds: 2 images, free on the embedded emulator "
        rf"\({re.escape(TWO)} at DashScope prices\); run directory one",
        summary(first.stderr),
    ), first.stderr
    assert "billed" not in summary(first.stderr)
    assert re.fullmatch(
        r"run ok in \d+\.\ds: 0 images \(every step from the cache\), free on the embedded "
        r"emulator \(\$0\.000000 at DashScope prices\); run directory two",
        summary(again.stderr),
    ), again.stderr
    assert "lock file cost.lock" not in first.stderr  # named after the recipe file
    assert "\nlock file recipe.lock\n" in first.stderr, first.stderr


def test_a_served_emulator_run_is_not_the_paid_service(recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
        done = run_cli("run", path.name, "--base-url", emu.base_url, "--out", "o", cwd=tmp_path)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr
    assert stats["billed_images"] == 2
    assert re.fullmatch(
        rf"run ok in \d+\.\ds: 2 images on url:127\.0\.0\.1:{emu.port}, not the paid service "
        rf"\({re.escape(TWO)} at DashScope prices\); run directory o",
        summary(done.stderr),
    ), done.stderr


def test_a_dashscope_run_says_what_was_spent(recipe_file, tmp_path):
    # The DashScope backend, pointed at an emulator on loopback (nothing leaves the machine):
    # the run is treated as paid, so the summary speaks of money spent.
    path = recipe_file(RECIPE)
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
        env = {**ENV, "DASHSCOPE_API_KEY": "sk-test", "DASHSCOPE_HTTP_BASE_URL": emu.base_url}
        done = run_cli(
            "run", path.name, "--backend", "dashscope", "--out", "o", cwd=tmp_path, env=env
        )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        rf"run ok in \d+\.\ds: 2 images billed, {re.escape(TWO)} spent on DashScope; "
        r"run directory o",
        summary(done.stderr),
    ), done.stderr
    assert "free" not in summary(done.stderr)


def test_lock_and_state_paths_are_relative_under_the_working_directory(recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    done = run_cli("run", path.name, "--out", "o", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\nlock file recipe.lock\n" in done.stderr, done.stderr
    plan = run_cli("plan", path.name, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "cache (.wanrecipe):" in plan.stdout + plan.stderr, plan.stdout
    clear = run_cli("cache", "clear", path.name, cwd=tmp_path, stdin="n\n")
    assert "cached results (2 images" in clear.stdout, clear.stdout
    assert " in .wanrecipe? [y/N]" in clear.stdout, clear.stdout
    missing = run_cli("cache", "ls", "--state-dir", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no state directory at nowhere " in missing.stderr, missing.stderr

    # Outside the working directory: absolute, as given.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = run_cli("run", str(path), "--out", "o2", cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    assert f"\nlock file {tmp_path / 'recipe.lock'}\n" in again.stderr, again.stderr
