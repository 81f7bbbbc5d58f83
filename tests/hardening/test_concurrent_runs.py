"""Two `wanrecipe run` processes of the same recipe and state dir at once (#15): the second
started 0, 0.3 and 1 s after the first. Both end with every output, `verify` passes for both,
and each step is submitted once in all (the second run waits for the first's work and picks up
its stored results; it never fails with "Busy")."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runs import make_image
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
ENV.pop("DASHSCOPE_API_KEY", None)
ENV.pop("WANRECIPE_BACKEND", None)

RECIPE = """\
version: 1
name: both
steps:
  a: {function: description_edit, image: in.png, prompt: brighter, parameters: {seed: 1}}
  b: {function: super_resolution, image: "{{ steps.a.image }}", prompt: sharper,
      parameters: {seed: 2, upscale_factor: 1}}
  c: {function: remove_watermark, image: in.png, prompt: remove the text}
  d: {function: expand, image: "{{ steps.c.image }}", prompt: a field,
      parameters: {seed: 4, left_scale: 1.2}}
"""
STEPS = ("a", "b", "c", "d")
# c has no seed of its own: both runs must draw the same one (the first claimed), or each
# would pay for its own image.


def _run(recipe: Path, emu: EmulatorThread, out: Path, state: Path) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "wanrecipe", "run", str(recipe), "--base-url", emu.base_url,
        "--out", str(out), "--state-dir", str(state), "--json",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("offset", [0.0, 0.3, 1.0])
def test_two_runs_of_one_recipe_at_once_both_finish(tmp_path: Path, offset: float) -> None:
    make_image(tmp_path / "in.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    state = tmp_path / "state"
    # Tasks that take a while, so the second run meets the first one's work in flight.
    config = EmulatorConfig(latency=0.8, engine_time_budget=0.1)
    with EmulatorThread(config) as emu:
        first = _run(recipe, emu, tmp_path / "out1", state)
        time.sleep(offset)
        second = _run(recipe, emu, tmp_path / "out2", state)
        outs = [p.communicate(timeout=150) for p in (first, second)]
        codes = [first.returncode, second.returncode]
        stats = emu.stats()
    assert codes == [0, 0], [err[-2000:] for _, err in outs]
    assert stats["submissions"]["accepted"] == len(STEPS), "a step was submitted twice"
    digests = []
    for out in ("out1", "out2"):
        record = json.loads((tmp_path / out / "run.json").read_text())
        assert record["status"] == "ok"
        files = {}
        for sid in STEPS:
            step = record["steps"][sid]
            assert step["state"] in ("done", "cached"), (out, sid, step["state"], step["error"])
            assert len(step["results"]) == 1
            data = (tmp_path / out / step["results"][0]["path"]).read_bytes()
            files[sid] = hashlib.sha256(data).hexdigest()
            assert files[sid] == step["results"][0]["sha256"]
        digests.append(files)
        assert not any("Busy" in w for w in record["warnings"])
        check = subprocess.run(
            [sys.executable, "-m", "wanrecipe", "verify", str(recipe), "--run-dir",
             str(tmp_path / out), "--state-dir", str(state)],
            env=ENV, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    assert digests[0] == digests[1]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_run_waiting_on_a_killed_run_takes_over(tmp_path: Path) -> None:
    # The first run dies (SIGKILL) after its tasks are submitted, while the second waits on
    # them: the second notices (pid check), re-attaches to the tasks and finishes; nothing is
    # submitted twice, and the wait never outlives the owner.
    make_image(tmp_path / "in.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    state = tmp_path / "state"
    config = EmulatorConfig(latency=3.0, engine_time_budget=0.1)
    with EmulatorThread(config) as emu:
        first = _run(recipe, emu, tmp_path / "out1", state)
        assert first.stdout is not None
        for line in first.stdout:
            event = json.loads(line)
            if event.get("step") == "a" and event.get("state") == "submitted":
                break
        second = _run(recipe, emu, tmp_path / "out2", state)
        assert second.stdout is not None
        for line in second.stdout:
            if "another run" in line:  # it is waiting on the first run's work
                break
        first.kill()
        first.communicate(timeout=30)
        _rest, err = second.communicate(timeout=150)
        stats = emu.stats()
    assert second.returncode == 0, err[-2000:]
    assert stats["submissions"]["accepted"] == len(STEPS), "a step was submitted twice"
    record = json.loads((tmp_path / "out2" / "run.json").read_text())
    assert all(record["steps"][s]["state"] in ("done", "cached") for s in STEPS)
    assert any(a["reattached"] for a in record["steps"]["a"]["attempts"])
    assert any("is gone; taking over" in w for w in record["warnings"]), record["warnings"]
