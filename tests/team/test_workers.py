"""Team mode end to end: real worker processes of
``wanrecipe run team.yaml --batch rows.csv --state <postgres> --blobs <bucket>`` against one
emulator over loopback (the account's quota: 2 submits/s, 2 running), a real Postgres and a
real S3 server (moto), both on 127.0.0.1."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

from .test_blobs_contract import bucket_objects
from .workers import Batch, make_batch, read_batch, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    # Tasks of a second: the workers' tasks overlap, so the quota is what paces them. A third
    # running task or a third submit in a second is refused, not queued: a worker that
    # overstepped the account's quota would show in the refusals.
    config = EmulatorConfig(latency=1.0, engine_time_budget=0.1, over_concurrency="reject")
    with EmulatorThread(config) as server:
        yield server


@pytest.fixture
def state(tmp_path: Path) -> list[str]:
    return ["--state-dir", str(tmp_path / "state")]


def finish(procs: list[subprocess.Popen[str]], timeout: float = 400) -> list[tuple[str, str]]:
    outs = [p.communicate(timeout=timeout) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * len(procs), [err[-3000:] for _, err in outs]
    return outs


def all_rows(batch: Batch, outs: list[Path]) -> dict[str, list[str]]:
    """Per row, the sha256 of its final image, from whichever worker finished it; every row
    must be finished by some worker, with every step's files intact."""
    finals: dict[str, list[str]] = {}
    for out in outs:
        for key, row in read_batch(out).items():
            if row.status == "ok":
                assert row.files_ok, (out, key)
                assert {s for s, _ in row.steps.values()} <= {"done", "cached"}, row
                finals.setdefault(key, row.steps[batch.steps[-1]][1])
    assert sorted(finals) == sorted(batch.keys)
    return finals


def test_four_workers_share_one_batch_within_one_quota(
    tmp_path: Path, emu: EmulatorThread, state: list[str], s3_bucket: str
) -> None:
    batch = make_batch(tmp_path / "work", rows=8)
    blobs = f"{s3_bucket}/team"
    outs = [tmp_path / f"worker{i}" for i in range(4)]
    finish([start_worker(batch, emu.base_url, out, state, blobs) for out in outs])
    stats = emu.stats()
    subs, tasks = stats["submissions"], stats["tasks"]
    # Exactly one submit per content key (every row's picture differs: 2 keys per row).
    assert subs["accepted"] == batch.tasks, subs
    assert stats["billed_images"] == batch.tasks
    # Within the account's quota, all four workers together.
    assert subs["refused"] == 0, subs["refused_by_code"]
    assert stats["throttles"] == {}
    assert subs["peak_accepted_1s"] <= 2
    assert tasks["peak_running"] <= 2
    # Every row's outputs are complete, and every image is in the bucket.
    finals = all_rows(batch, outs)
    shas = {sha for out in outs for row in read_batch(out).values()
            for _, got in row.steps.values() for sha in got}  # fmt: skip
    assert len(shas) == batch.tasks
    assert {k.rsplit("/", 2)[-2] + k.rsplit("/", 1)[-1] for k in bucket_objects(blobs)} == shas
    # A fifth run of the same batch pays nothing: every row from the shared cache.
    again = tmp_path / "again"
    finish([start_worker(batch, emu.base_url, again, state, blobs)])
    assert emu.stats()["submissions"]["accepted"] == batch.tasks
    rerun = read_batch(again)
    assert {r.status for r in rerun.values()} == {"ok"}
    assert {s for r in rerun.values() for s, _ in r.steps.values()} == {"cached"}
    assert {k: r.steps[batch.steps[-1]][1] for k, r in rerun.items()} == finals
