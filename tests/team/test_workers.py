"""Team mode end to end: real worker processes of
``wanrecipe run team.yaml --batch rows.csv --state <postgres> --blobs <bucket>`` against one
emulator over loopback (the account's quota: 2 submits/s, 2 running), a real Postgres and a
real S3 server (moto), both on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

from .test_blobs_contract import bucket_objects
from .workers import Batch, make_batch, read_batch, start_worker, worker_env

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
def state(pg_url: str) -> list[str]:
    return ["--state", pg_url]


def machine(tmp_path: Path, name: str, **env: str) -> dict[str, str]:
    """A worker's own machine: its host name and local state dir (downloads, blob cache)."""
    return {"WANRECIPE_HOST": name, "WANRECIPE_STATE_DIR": str(tmp_path / name), **env}


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
    finish([
        start_worker(batch, emu.base_url, out, state, blobs, env=machine(tmp_path, out.name))
        for out in outs
    ])  # fmt: skip
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
    # The rows were split: each one run by exactly one worker (claimed with SKIP LOCKED).
    owners = [out.name for out in outs for r in read_batch(out).values() if r.status == "ok"]
    assert len(owners) == batch.rows
    # A fifth worker later finds nothing left to do and pays nothing.
    again = tmp_path / "again"
    finish([start_worker(batch, emu.base_url, again, state, blobs, env=machine(tmp_path, "5th"))])
    assert emu.stats()["submissions"]["accepted"] == batch.tasks
    assert {r.status for r in read_batch(again).values()} == {"skipped"}
    # Each worker's run directory checks out against what it recorded.
    for out in outs:
        check = subprocess.run(
            [sys.executable, "-m", "wanrecipe", "verify", str(out)],
            env=worker_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    assert finals


TTL = 3.0


@pytest.fixture
def slow_emu() -> Iterator[EmulatorThread]:
    # Tasks of 4 s: the killed worker's task is still running when the survivors start.
    config = EmulatorConfig(latency=4.0, engine_time_budget=0.1, over_concurrency="reject")
    with EmulatorThread(config) as server:
        yield server


def test_a_killed_workers_orphan_is_taken_over_after_the_ttl_and_never_resubmitted(
    tmp_path: Path, slow_emu: EmulatorThread, state: list[str], pg_url: str, s3_bucket: str
) -> None:
    batch = make_batch(tmp_path / "work", rows=4, one_step=True)
    blobs = f"{s3_bucket}/team"
    ttl = {"WANRECIPE_HEARTBEAT_TTL": f"{TTL:g}s"}
    doomed = start_worker(batch, slow_emu.base_url, tmp_path / "doomed", state, blobs,
                          env=machine(tmp_path, "host-a", **ttl))  # fmt: skip
    assert doomed.stdout is not None
    for line in doomed.stdout:  # the task id is journalled before this event
        event = json.loads(line)
        if event.get("event") == "step" and event.get("state") == "submitted":
            orphan_row = event["row"]
            break
    else:
        pytest.fail(doomed.communicate()[1][-3000:])
    doomed.kill()  # SIGKILL: no sign-off; its heartbeats (journal and rows) just stop
    doomed.communicate(timeout=30)
    outs = [tmp_path / "host-b", tmp_path / "host-c"]
    finish([
        start_worker(batch, slow_emu.base_url, out / "out", state, blobs,
                     env=machine(tmp_path, out.name, **ttl))
        for out in outs
    ])  # fmt: skip
    stats = slow_emu.stats()
    assert stats["submissions"]["accepted"] == batch.tasks, "the orphan was submitted again"
    assert stats["submissions"]["refused"] == 0 and stats["tasks"]["peak_running"] <= 2
    records = {out.name: read_batch(out / "out") for out in outs}
    ran = [(name, key) for name, rows in records.items() for key, r in rows.items()
           if r.status == "ok"]  # fmt: skip
    assert sorted(key for _, key in ran) == batch.keys  # every row, each by one survivor
    taker = next(name for name, key in ran if key == orphan_row)
    run = json.loads((tmp_path / taker / "out" / orphan_row / "run.json").read_text())
    step = run["steps"]["edit"]
    assert step["state"] == "done" and [a["reattached"] for a in step["attempts"]] == [True]
    assert any("host-a" in w and "takes it over" in w for w in run["warnings"]), run["warnings"]
    # Taken over only once host-a's last heartbeat was older than the TTL, on the database's
    # clock, and by the survivor that then finished it.
    from wanrecipe.store import BlobStore
    from wanrecipe.store.pg_journal import PostgresJournal

    with PostgresJournal(pg_url, BlobStore(tmp_path / "probe")) as journal:
        attempt = next(a for a in journal.attempts() if a.task_id == step["attempts"][0]["task_id"])
        seen = journal.owner_seen("host-a", doomed.pid)
    assert attempt.state == "done" and attempt.owner_host == taker
    assert seen is not None and attempt.finished_at is not None
    assert attempt.finished_at > seen + TTL


ALICE = "sk-team-alice-0123456789"
BOB = "sk-team-bob-9876543210"


@pytest.fixture
def two_account_emu() -> Iterator[EmulatorThread]:
    # A quota per key (2 submits/s and 2 running each) and tasks of 4 s: each account's six
    # tasks keep it busy for 12 s at least, far longer than the workers' start-up skew, so the
    # two accounts' work overlaps.
    config = EmulatorConfig(latency=4.0, engine_time_budget=0.1, over_concurrency="reject")
    with EmulatorThread(config) as server:
        yield server


def test_two_accounts_side_by_side_each_at_its_own_quota(
    tmp_path: Path, two_account_emu: EmulatorThread, state: list[str], s3_bucket: str
) -> None:
    from wanrecipe.emulator.accounts import key_id

    emu = two_account_emu
    blobs = f"{s3_bucket}/team"
    # One state and one bucket for the whole team; each account its own batch (its own
    # pictures), run by two workers of its own.
    batches = {
        ALICE: make_batch(tmp_path / "alice", rows=6, name="alice", one_step=True),
        BOB: make_batch(tmp_path / "bob", rows=6, name="bob", one_step=True),
    }
    procs, outs = [], {}
    for key, batch in batches.items():
        for i in range(2):
            name = f"{batch.name}-{i}"
            outs.setdefault(key, []).append(tmp_path / name / "out")
            env = machine(tmp_path, name, DASHSCOPE_API_KEY=key)
            procs.append(start_worker(batch, emu.base_url, outs[key][-1], state, blobs, env=env))
    finish(procs)
    snap = emu.stats()
    for key, batch in batches.items():
        mine = snap["accounts"][key_id(key)]
        assert mine["submissions"]["accepted"] == batch.tasks  # one submit per key, its own
        assert mine["submissions"]["refused"] == 0, mine["submissions"]["refused_by_code"]
        assert mine["tasks"]["peak_running"] <= 2
        assert mine["submissions"]["peak_accepted_1s"] <= 2
        finals = all_rows(batch, outs[key])
        assert len(finals) == batch.rows
    # Side by side, not one after the other: more than one account's quota ran at once.
    assert snap["tasks"]["peak_running"] > 2
    assert ALICE not in str(snap) and BOB not in str(snap)
