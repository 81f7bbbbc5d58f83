"""Engine labels (the `engines`/`paytwice`/`report` contract): each result's
``wanrecipe:fidelity|engine|note`` PNG text chunks reach run.json, the step's JSON events and
the CLI summary, which marks every step whose result is not ``real``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.executor.labels import read_labels

from .conftest import make_image
from .test_cli_run import ENV

RECIPE = """\
version: 1
name: labels
steps:
  cartoon: {function: control_cartoon_feature, image: in.png, prompt: "卡通形象 waving",
            parameters: {seed: 1}}
  sharp: {function: super_resolution, image: in.png, prompt: sharper,
          parameters: {seed: 2, upscale_factor: 1}}
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wanrecipe", *args], cwd=cwd, env=ENV, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_labels_reach_the_record_the_events_and_the_summary(tmp_path: Path) -> None:
    make_image(tmp_path / "in.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
        common = ["--base-url", emu.base_url, "--state-dir", str(tmp_path / "state")]
        first = _cli("run", str(recipe), "--out", "out1", "--json", *common, cwd=tmp_path)
        # Run again: cached, the labels read back from the stored images.
        second = _cli("run", str(recipe), "--out", "out2", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr

    record = json.loads((tmp_path / "out1" / "run.json").read_text())
    cartoon = record["steps"]["cartoon"]["results"][0]
    sharp = record["steps"]["sharp"]["results"][0]
    assert cartoon["fidelity"] == "placeholder" and cartoon["engine"]
    assert sharp["fidelity"] == "real" and sharp["engine"]
    assert read_labels(tmp_path / "out1" / cartoon["path"]).fidelity == "placeholder"

    events = [json.loads(line) for line in first.stdout.splitlines() if line.strip()]
    done = {e["step"]: e for e in events if e.get("event") == "step" and e.get("state") == "done"}
    assert done["cartoon"]["results"][0]["fidelity"] == "placeholder"
    assert done["sharp"]["results"][0]["fidelity"] == "real"

    cached = json.loads((tmp_path / "out2" / "run.json").read_text())
    assert cached["steps"]["cartoon"]["state"] == "cached"
    assert cached["steps"]["cartoon"]["results"][0]["fidelity"] == "placeholder"
    marked = [line for line in second.stderr.splitlines() if line.startswith("emulated ")]
    assert len(marked) == 1 and marked[0].startswith("emulated cartoon: placeholder"), marked


def test_a_png_without_labels_reads_as_none(tmp_path: Path) -> None:
    path = make_image(tmp_path / "plain.png")
    labels = read_labels(path)
    assert (labels.fidelity, labels.engine, labels.note) == (None, None, None)
    (tmp_path / "not.png").write_bytes(b"GIF89a")
    assert read_labels(tmp_path / "not.png").fidelity is None
