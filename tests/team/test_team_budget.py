"""One budget across every worker: real ``wanrecipe run --batch --max-cost`` processes on one
Postgres state (and, on one machine, one state directory), against one emulator over
loopback. The emulator's billed images are the truth."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from wanrecipe import wire
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

from .workers import make_batch, read_batch, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PRICE = wire.PRICE_PER_IMAGE_USD


def cap(images: int) -> str:
    """A --max-cost with room for exactly ``images`` images."""
    return str(PRICE * images + Decimal("0.0001"))


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    # Tasks of a second: the workers' tasks overlap, so each one's reservations race the
    # others'; over-quota submits are refused, not queued.
    config = EmulatorConfig(latency=1.0, engine_time_budget=0.1, over_concurrency="reject")
    with EmulatorThread(config) as server:
        yield server


def machine(tmp_path: Path, name: str) -> dict[str, str]:
    return {"WANRECIPE_HOST": name, "WANRECIPE_STATE_DIR": str(tmp_path / name)}


def outcomes(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    done = [(p.communicate(timeout=400), p.returncode) for p in procs]
    return [(code, err) for (_, err), code in done]


def test_four_workers_on_postgres_spend_one_budget_and_a_raised_one_finishes_the_rest(
    tmp_path: Path, emu: EmulatorThread, pg_url: str, s3_bucket: str
) -> None:
    batch = make_batch(tmp_path / "work", rows=12, one_step=True)  # 1 image per row
    state, blobs = ["--state", pg_url], f"{s3_bucket}/team"
    outs = [tmp_path / f"w{i}" / "out" for i in range(4)]
    procs = [
        start_worker(batch, emu.base_url, out, state, blobs, env=machine(tmp_path, f"w{i}"),
                     extra=["--max-cost", cap(5)], as_json=False)
        for i, out in enumerate(outs)
    ]  # fmt: skip
    results = outcomes(procs)
    stats = emu.stats()
    # Each worker alone could have spent 5 images (20 together): the tally held them to 5.
    assert stats["billed_images"] == 5, stats
    assert stats["submissions"]["accepted"] == 5
    # Every worker stopped cleanly at the budget, with what is left of the whole batch.
    assert [code for code, _ in results] == [3, 3, 3, 3], [err[-2000:] for _, err in results]
    for _, err in results:
        # Rows of the whole batch that no worker had finished when this one stopped (others
        # may still have been finishing rows the budget had admitted): 7 once all are done.
        found = re.search(r"the budget was reached: (\d+) rows left \((\d+) images\)", err)
        assert found is not None, err[-2000:]
        left = int(found[1])
        assert 7 <= left <= 12 and int(found[2]) == left
        assert f"would cost ${PRICE * left:.4f} more; raise --max-cost" in err
    done = {k for out in outs for k, r in read_batch(out).items() if r.status == "ok"}
    assert len(done) == 5
    for out in outs:
        record = json.loads((out / "run.json").read_text())
        assert record["status"] == "budget"
    # The same cap again: the budget is spent (its tally outlives the workers), nothing sent.
    again = tmp_path / "again" / "out"
    [(code, err)] = outcomes([
        start_worker(batch, emu.base_url, again, state, blobs, env=machine(tmp_path, "again"),
                     extra=["--max-cost", cap(5)])
    ])  # fmt: skip
    assert code == 3, err[-2000:]
    assert emu.stats()["billed_images"] == 5
    # A raised cap: two workers finish only the rest, one submit per row in all.
    final = [tmp_path / f"r{i}" / "out" for i in range(2)]
    results = outcomes([
        start_worker(batch, emu.base_url, out, state, blobs, env=machine(tmp_path, f"r{i}"),
                     extra=["--max-cost", cap(12)])
        for i, out in enumerate(final)
    ])  # fmt: skip
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    stats = emu.stats()
    assert stats["billed_images"] == 12 == stats["submissions"]["accepted"]
    finished = {k for out in final for k, r in read_batch(out).items() if r.status == "ok"}
    assert finished == set(batch.keys) - done


def test_two_batches_on_one_state_dir_share_a_named_budget(
    tmp_path: Path, emu: EmulatorThread
) -> None:
    """On one machine, without Postgres: two different batches (each alone would spend the
    whole cap) on one state directory with one WANRECIPE_BUDGET_ID spend one tally."""
    state = ["--state-dir", str(tmp_path / "state")]
    batches = [make_batch(tmp_path / f"b{i}", rows=6, name=f"b{i}", one_step=True) for i in (0, 1)]
    env = {"WANRECIPE_BUDGET_ID": "team-weekly"}
    procs = [
        start_worker(b, emu.base_url, tmp_path / f"out{i}", state, str(tmp_path / "blobs"),
                     env=env, extra=["--max-cost", cap(4)])
        for i, b in enumerate(batches)
    ]  # fmt: skip
    results = outcomes(procs)
    assert emu.stats()["billed_images"] == 4
    assert sorted(code for code, _ in results) == [3, 3], [err[-2000:] for _, err in results]
    assert (tmp_path / "state" / "budgets.sqlite").is_file()
