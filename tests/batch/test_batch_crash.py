"""A batch killed with SIGKILL mid-run and run again finishes only the rest: one submit per
step in the emulator's stats, however the kill fell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

pytestmark = pytest.mark.slow


def start(recipe: Path, out: str, base_url: str, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "WANRECIPE_STATE_DIR": str(state)}
    return subprocess.Popen(
        [sys.executable, "-m", "wanrecipe", "run", str(recipe), "--batch", "rows.csv",
         "--out", out, "--base-url", base_url, "--json"],
        cwd=recipe.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_killed_batch_reruns_only_what_is_unfinished(batch_dir, tmp_path):
    recipe = batch_dir(rows=5)
    state = tmp_path / "state"
    with EmulatorThread(EmulatorConfig(latency=1.0, engine_time_budget=0.2)) as emu:
        first = start(recipe, "out1", emu.base_url, state)
        assert first.stdout is not None
        rows_done = 0
        deadline = time.monotonic() + 120
        for line in first.stdout:
            event = json.loads(line)
            if event.get("event") == "row":
                rows_done += 1
            # Kill once a row is done and a task of another row is in flight.
            if rows_done >= 1 and event.get("event") == "step" and event["state"] == "submitted":
                break
            assert time.monotonic() < deadline
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        first.stdout.close()
        assert first.stderr is not None
        first.stderr.close()
        before = emu.stats()["submissions"]["accepted"]
        assert 0 < before < 10

        second = start(recipe, "out2", emu.base_url, state)
        _, err = second.communicate(timeout=240)
        assert second.returncode == 0, err
        stats = emu.stats()
    # Every one of the 10 steps was submitted exactly once over both runs.
    assert stats["submissions"]["accepted"] == 10
    top = json.loads((tmp_path / "out2" / "run.json").read_text())
    assert top["status"] == "ok"
    assert [r["status"] for r in top["rows"]] == ["ok"] * 5
    for row in top["rows"]:
        assert (tmp_path / "out2" / row["dir"] / "style.png").is_file()
    # The rows the first run had finished come from the cache in the second.
    cached = [
        r for r in top["rows"]
        if {s["state"] for s in json.loads(
            (tmp_path / "out2" / r["dir"] / "run.json").read_text())["steps"].values()}
        == {"cached"}
    ]  # fmt: skip
    assert len(cached) >= rows_done
