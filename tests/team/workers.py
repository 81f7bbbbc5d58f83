"""What the team tests and bench_team.py share: a batch on disk, worker subprocesses of
``wanrecipe run --batch`` against one state and one bucket, and reading their results."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

RECIPE = """\
version: 1
name: team
params:
  photo: {type: image, default: photos/p0.png}
defaults:
  seed: 5
steps:
  edit: {function: description_edit, image: "{{ params.photo }}", prompt: brighter}
  sharp:
    function: super_resolution
    image: "{{ steps.edit.image }}"
    prompt: sharper
    parameters: {upscale_factor: 1}
outputs:
  final: "{{ steps.sharp.image }}"
"""
STEPS = ("edit", "sharp")
ONE_STEP = RECIPE.split("  sharp:")[0] + 'outputs:\n  final: "{{ steps.edit.image }}"\n'


@dataclass
class Batch:
    """A recipe and its rows file in ``root``: one distinct picture per row."""

    root: Path
    rows: int
    name: str = "rows"
    steps: tuple[str, ...] = STEPS

    @property
    def recipe(self) -> Path:
        return self.root / "team.yaml"

    @property
    def rows_file(self) -> Path:
        return self.root / f"{self.name}.csv"

    @property
    def keys(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.rows)]

    @property
    def tasks(self) -> int:
        return self.rows * len(self.steps)


def make_batch(root: Path, rows: int, *, name: str = "rows", one_step: bool = False) -> Batch:
    """Write the recipe, ``rows`` distinct 512x512 pictures and the rows file."""
    root.mkdir(parents=True, exist_ok=True)
    batch = Batch(root, rows, name, STEPS[:1] if one_step else STEPS)
    batch.recipe.write_text(ONE_STEP if one_step else RECIPE, encoding="utf-8")
    photos = root / "photos"
    photos.mkdir(exist_ok=True)
    with batch.rows_file.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["key", "photo"])
        for i, key in enumerate(batch.keys):
            path = photos / f"{key}.png"
            if not path.exists():
                _picture(path, i, name)
            out.writerow([key, f"photos/{key}.png"])
    return batch


def _picture(path: Path, i: int, salt: str) -> None:
    seed = int(hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()[:6], 16)
    im = Image.new("RGB", (512, 512), (seed % 200, (seed >> 8) % 200, (seed >> 16) % 200))
    draw = ImageDraw.Draw(im)
    for k in range(8):
        x = (seed >> k) % 400
        draw.rectangle((x, 40 * k, x + 100, 40 * k + 60), fill=(255 - 20 * k, 30 * k, 128))
    im.save(path)


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    for name in ("DASHSCOPE_API_KEY", "WANRECIPE_BACKEND", "WANRECIPE_BASE_URL"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update(extra or {})
    return env


def start_worker(
    batch: Batch,
    base_url: str,
    out: Path,
    state: Sequence[str],
    blobs: str,
    *,
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
    as_json: bool = True,
) -> subprocess.Popen[str]:
    """``wanrecipe run team.yaml --batch rows.csv --state ... --blobs ... --json`` (without
    ``--json``: the summary and what is left on stderr, as a person sees them)."""
    cmd = [
        sys.executable, "-m", "wanrecipe", "run", str(batch.recipe),
        "--batch", str(batch.rows_file), "--base-url", base_url, "--out", str(out),
        *state, "--blobs", blobs, *(["--json"] if as_json else []), *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd,
        env=worker_env(env),
        cwd=batch.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass
class RowResult:
    key: str
    status: str
    #: step -> (state, sha256 of each result)
    steps: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    #: every result file, checked against its recorded sha256
    files_ok: bool = True


def read_batch(out: Path) -> dict[str, RowResult]:
    """A batch run directory's rows, each with its steps and whether its files are intact."""
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    rows: dict[str, RowResult] = {}
    for row in record["rows"]:
        result = RowResult(row["key"], row["status"])
        run_json = out / row["dir"] / "run.json"
        if run_json.exists():
            run: dict[str, Any] = json.loads(run_json.read_text(encoding="utf-8"))
            for sid, step in run["steps"].items():
                shas = [r["sha256"] for r in step["results"]]
                result.steps[sid] = (step["state"], shas)
                for r in step["results"]:
                    path = out / row["dir"] / r["path"]
                    ok = (
                        path.is_file()
                        and hashlib.sha256(path.read_bytes()).hexdigest() == (r["sha256"])
                    )
                    result.files_ok &= ok
        rows[row["key"]] = result
    return rows


def events(stdout: str) -> list[dict[str, Any]]:
    found = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found
