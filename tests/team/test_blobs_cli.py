"""``--blobs s3://...`` / ``WANRECIPE_BLOBS`` through the CLI and the Python API: real runs on a
real emulator (loopback), images in a real bucket (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from wanrecipe import run_recipe
from wanrecipe.cli import main
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.runner import BackendChoice
from wanrecipe.store import StateDir

from .test_blobs_contract import bucket_objects

CHAIN = """\
    version: 1
    name: chain
    steps:
      colorize: {function: colorization, image: in.png, prompt: a valley}
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: sharper
        parameters: {upscale_factor: 2}
"""


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as server:
        yield server


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    Image.new("RGB", (512, 512), (90, 120, 40)).save(tmp_path / "in.png")
    path = tmp_path / "chain.yaml"
    path.write_text(textwrap.dedent(CHAIN), encoding="utf-8")
    return path


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run(recipe: Path, emu: EmulatorThread, out: str, *extra: str) -> Result:
    where = ["--out", str(recipe.parent / out), "--state-dir", str(recipe.parent / "state")]
    return cli("run", str(recipe), "--base-url", emu.base_url, *where, *extra)


def plan_marks(recipe: Path) -> dict[str, str]:
    planned = cli("plan", str(recipe), "--json", "--state-dir", str(recipe.parent / "state"))
    assert planned.exit_code == 0, planned.output
    levels = json.loads(planned.stdout)["levels"]
    return {s["id"]: s["cache"]["status"] for level in levels for s in level}


def objects(bucket: str) -> set[str]:
    return {k.rsplit("/", 2)[-2] + k.rsplit("/", 1)[-1] for k in bucket_objects(bucket)}


def test_run_stores_images_in_the_bucket_and_a_rerun_fetches_them(
    recipe: Path, emu: EmulatorThread, s3_bucket: str
) -> None:
    bucket = f"{s3_bucket}/wan"
    done = run(recipe, emu, "out1", "--blobs", bucket)
    assert done.exit_code == 0, done.output
    record = json.loads((recipe.parent / "out1" / "run.json").read_text())
    shas = {r["sha256"] for s in record["steps"].values() for r in s["results"]}
    assert len(shas) == 2 and objects(bucket) == shas
    # Nothing in the state dir's own objects/: the bucket is the store, blobcache/ its cache.
    state = recipe.parent / "state"
    assert not any((state / "objects").glob("??/*"))
    assert {p.parent.name + p.name for p in (state / "blobcache").glob("??/*")} == shas
    submits = emu.stats()["submissions"]["accepted"]

    shutil.rmtree(state / "blobcache")  # another machine's cache: empty
    again = run(recipe, emu, "out2", "--blobs", bucket)
    assert again.exit_code == 0, again.output
    assert emu.stats()["submissions"]["accepted"] == submits  # every step from the cache, $0
    rerun = json.loads((recipe.parent / "out2" / "run.json").read_text())
    assert {s["state"] for s in rerun["steps"].values()} == {"cached"}
    for name in ("colorize.png", "upscale.png"):
        assert (recipe.parent / "out2" / name).read_bytes() == (
            recipe.parent / "out1" / name
        ).read_bytes()

    verified = cli("verify", str(recipe), "--state-dir", str(state), "--blobs", bucket)
    assert verified.exit_code == 0, verified.output
    listed = cli("cache", "ls", str(recipe), "--state-dir", str(state), "--blobs", bucket)
    assert listed.exit_code == 0 and "2 images" in listed.stdout.splitlines()[-1]
    cleared = cli("cache", "clear", "--yes", "--state-dir", str(state), "--blobs", bucket)
    assert cleared.exit_code == 0, cleared.output
    assert "2 images" in cleared.stdout and objects(bucket) == set()


def test_the_env_var_is_the_default_and_plan_reads_the_bucket(
    recipe: Path, emu: EmulatorThread, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANRECIPE_BLOBS", s3_bucket)
    assert run(recipe, emu, "out").exit_code == 0
    assert len(objects(s3_bucket)) == 2
    planned = cli("plan", str(recipe), "--json", "--state-dir", str(recipe.parent / "state"))
    assert planned.exit_code == 0, planned.output
    marks = {
        s["id"]: s["cache"]["status"] for lv in json.loads(planned.stdout)["levels"] for s in lv
    }
    assert marks == {"colorize": "cached", "upscale": "cached"}
    # Without the bucket the same journal's results are not there: they would run again.
    monkeypatch.delenv("WANRECIPE_BLOBS")
    planned = cli("plan", str(recipe), "--json", "--state-dir", str(recipe.parent / "state"))
    marks = {
        s["id"]: s["cache"]["status"] for lv in json.loads(planned.stdout)["levels"] for s in lv
    }
    assert marks == {"colorize": "run", "upscale": "run"}


def test_python_api_takes_blobs(recipe: Path, emu: EmulatorThread, s3_bucket: str) -> None:
    record = run_recipe(
        recipe,
        backend=BackendChoice("url", emu.base_url),
        run_dir=recipe.parent / "out",
        state_dir=recipe.parent / "state",
        blobs=s3_bucket + "/api",
    )
    assert record.status == "ok"
    shas = {r.sha256 for s in record.steps.values() for r in s.results}
    assert objects(s3_bucket + "/api") == shas
    with StateDir.open(recipe.parent / "state", blobs=s3_bucket + "/api") as state:
        assert all(state.blobs.verify(sha) for sha in shas)


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        (["--blobs", "gs://bucket/x"], None, "--blobs gs://bucket/x: gs:// is not supported"),
        ([], "ftp://host/x", "WANRECIPE_BLOBS ftp://host/x: ftp:// is not supported"),
        (["--blobs", "s3://k:secret@bucket/x"], None, "takes no credentials or options"),
    ],
)
def test_a_bad_location_is_refused_before_anything_runs(
    recipe: Path,
    emu: EmulatorThread,
    monkeypatch: pytest.MonkeyPatch,
    flag: list[str],
    env: str | None,
    message: str,
) -> None:
    if env is not None:
        monkeypatch.setenv("WANRECIPE_BLOBS", env)
    before = emu.stats()["submissions"]["accepted"]
    done = run(recipe, emu, "out", *flag)
    assert done.exit_code == 2
    assert message in done.output and "secret" not in done.output
    assert not (recipe.parent / "out").exists() and not (recipe.parent / "state").exists()
    assert emu.stats()["submissions"]["accepted"] == before
    for command in (["cache", "ls"], ["verify", str(recipe)]):
        refused = cli(*command, *flag, "--state-dir", str(recipe.parent / "state"))
        assert refused.exit_code == 2 and message in refused.output
