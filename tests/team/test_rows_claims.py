"""Batch rows as a table: processes claim rows with FOR UPDATE SKIP LOCKED and split one
batch with no scheduler of their own; a silent claimer's rows are taken over; a done row is
never claimed again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wanrecipe.batch.claims import AllRows, open_claims
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

psycopg = pytest.importorskip("psycopg")

from wanrecipe.batch.claims_pg import PostgresClaims  # noqa: E402

KEYS = [f"r{i}" for i in range(6)]


def table(url: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT row_key, status, claims FROM batch_rows").fetchall()
    return {key: (status, claims) for key, status, claims in rows}


def test_all_rows_are_mine_by_default(tmp_path: Path) -> None:
    claims = open_claims(tmp_path)
    assert isinstance(claims, AllRows) and not claims.shared
    claims.register("b", KEYS)
    assert claims.claim(4) == KEYS[:4] and claims.claim(4) == KEYS[4:] and claims.claim(4) == []


def test_a_postgres_state_claims_from_the_rows_table(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANRECIPE_STATE", pg_url)
    for given in (pg_url, None):  # --state, or WANRECIPE_STATE
        claims = open_claims(given)
        try:
            assert isinstance(claims, PostgresClaims) and claims.shared
        finally:
            claims.close()


def test_two_claimers_never_share_a_row(pg_url: str) -> None:
    one, two = PostgresClaims(pg_url), PostgresClaims(pg_url)
    try:
        for claims in (one, two):
            claims.register("batch-a", KEYS)
        first, second = one.claim(4), two.claim(4)
        assert first == KEYS[:4] and second == KEYS[4:]  # in the batch's order, disjoint
        # Asked again (between chunks: its answer was lost), each gets its own rows back.
        assert one.claim(4) == first and two.claim(4) == second
        one.finish("r0", "ok")
        one.finish("r1", "failed")
        one.finish("r2", "interrupted")  # free again at once
        assert two.claim(4) == ["r2", "r4", "r5"]
        assert {k: s for k, (s, _) in table(pg_url).items()} == {
            "r0": "done", "r1": "failed", "r2": "claimed", "r3": "claimed",
            "r4": "claimed", "r5": "claimed",
        }  # fmt: skip
        assert one.others()["r4"].startswith("claimed by ")
    finally:
        one.close()
        two.close()
    # close() gave back what each still held; a new process on the batch retries the
    # failed row, never the done one.
    third = PostgresClaims(pg_url)
    try:
        third.register("batch-a", KEYS)
        assert third.claim(10) == ["r1", "r2", "r3", "r4", "r5"]
    finally:
        third.close()


def test_another_batch_is_other_rows(pg_url: str) -> None:
    one, two = PostgresClaims(pg_url), PostgresClaims(pg_url)
    try:
        one.register("batch-a", KEYS)
        two.register("batch-b", KEYS)
        assert one.claim(10) == KEYS and two.claim(10) == KEYS
    finally:
        one.close()
        two.close()


def test_a_silent_claimers_rows_are_taken_over_after_the_ttl(pg_url: str) -> None:
    silent = PostgresClaims(pg_url, ttl_s=1.0)
    alive = PostgresClaims(pg_url, ttl_s=1.0)
    try:
        silent.register("batch-a", KEYS)
        alive.register("batch-a", KEYS)
        assert silent.claim(3) == KEYS[:3]
        assert alive.claim(3) == KEYS[3:]  # the free rows; the silent one's are still its
        got: list[str] = []
        deadline = time.monotonic() + 60
        while "r0" not in got and time.monotonic() < deadline:
            alive.heartbeat()
            got = alive.claim(3)
            time.sleep(0.2)
        # Once the silent one's heartbeat is 1 s old, its rows (first in the batch's order).
        assert got == ["r0", "r1", "r2"]
        assert {k: c for k, (_, c) in table(pg_url).items()}["r0"] == 2  # claimed twice
        silent.finish("r0", "ok")  # too late: no longer its row
        assert table(pg_url)["r0"][0] == "claimed"
    finally:
        silent.close()
        alive.close()


RECIPE = """\
version: 1
name: claimed
params:
  colors: {type: string, default: blue sky}
steps:
  color:
    function: colorization
    image: in.png
    prompt: "{{ params.colors }}"
"""

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from wanrecipe.api import load_recipe
    from wanrecipe.batch import BatchGraph, as_rows, execute_batch, load_rows_recipes
    from wanrecipe.batch.claims_pg import PostgresClaims
    from wanrecipe.runner import BackendChoice

    folder, url, base, name, ttl = sys.argv[1:6]
    rows = [{"key": f"r{i}", "colors": f"colors {i}"} for i in range(int(sys.argv[6]))]
    path = Path(folder) / "recipe.yaml"
    loaded = load_rows_recipes(path, as_rows(rows), load_recipe)
    graph = BatchGraph(loaded[0].recipe.path, loaded)
    print("ready", flush=True)
    sys.stdin.readline()
    record = asyncio.run(execute_batch(
        graph, backend=BackendChoice(kind="url", base_url=base, api_key="sk-team"),
        run_dir=Path(folder) / name, state_dir=Path(folder) / "state",
        claims=PostgresClaims(url, ttl_s=float(ttl)),
    ))
    print(json.dumps({r.key: r.status for r in record.rows}), flush=True)
    """
)


def worker(folder: Path, url: str, base: str, name: str, rows: int, ttl: float = 30.0):
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(folder), url, base, name, str(ttl), str(rows)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> dict[str, str]:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    return dict(json.loads(out.strip().splitlines()[-1]))


def folder_with_recipe(tmp_path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (512, 512), (90, 120, 150)).save(tmp_path / "in.png")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path


@pytest.mark.slow
def test_two_processes_split_one_batch_with_no_row_done_twice(tmp_path: Path, pg_url: str):
    folder = folder_with_recipe(tmp_path)
    config = EmulatorConfig(latency=1.0, engine_time_budget=0.2)
    with EmulatorThread(config) as emu:
        procs = [worker(folder, pg_url, emu.base_url, name, 8) for name in ("a", "b")]
        for proc in procs:
            go(proc)
        a, b = (finish(p) for p in procs)
        stats = emu.stats()
    ran_a = {k for k, s in a.items() if s == "ok"}
    ran_b = {k for k, s in b.items() if s == "ok"}
    assert ran_a and ran_b and not ran_a & ran_b  # both worked, never on the same row
    assert ran_a | ran_b == {f"r{i}" for i in range(8)}
    assert all(a[k] == "skipped" for k in ran_b) and all(b[k] == "skipped" for k in ran_a)
    assert stats["submissions"]["accepted"] == 8  # one submit per row
    assert stats["tasks"]["peak_running"] <= 2
    assert {s for s, _ in table(pg_url).values()} == {"done"}
    for key in ran_a:
        assert (folder / "a" / key / "color.png").exists()
    # A re-run finds nothing left: it submits nothing.
    with EmulatorThread(config) as emu:
        again = worker(folder, pg_url, emu.base_url, "c", 8)
        go(again)
        assert set(finish(again).values()) == {"skipped"}
        assert emu.stats()["submissions"]["accepted"] == 0


@pytest.mark.slow
def test_a_killed_claimers_rows_are_taken_over(tmp_path: Path, pg_url: str):
    """A worker killed (SIGKILL) right after its first submit: another worker takes its rows
    once its heartbeat is 2 s old, re-attaches to the task it submitted (the journal), and
    every row ends done with one submit each."""
    folder = folder_with_recipe(tmp_path)
    config = EmulatorConfig(latency=1.0, engine_time_budget=0.2)
    with EmulatorThread(config) as emu:
        doomed = worker(folder, pg_url, emu.base_url, "a", 4, ttl=2.0)
        go(doomed)
        deadline = time.monotonic() + 120
        while emu.stats()["submissions"]["accepted"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        assert doomed.stdout is not None
        doomed.stdout.close()
        assert doomed.stdin is not None
        doomed.stdin.close()
        assert "claimed" in {s for s, _ in table(pg_url).values()}
        survivor = worker(folder, pg_url, emu.base_url, "b", 4, ttl=2.0)
        go(survivor)
        done = finish(survivor)
        stats = emu.stats()
    assert done == {f"r{i}": "ok" for i in range(4)}
    assert stats["submissions"]["accepted"] == 4  # the killed worker's task was not paid twice
    assert {s for s, _ in table(pg_url).values()} == {"done"}
    assert max(c for _, c in table(pg_url).values()) == 2  # taken over, not started afresh


async def test_a_claimed_batch_reads_as_one_batch(tmp_path: Path, pg_url: str) -> None:
    """Two chunks of claimed rows, one batch to whoever watches: one run_started naming all
    rows, row counts across chunks, one run_finished, one run.json; the budget spans the
    chunks (the second gets what the first left)."""
    from wanrecipe import wire
    from wanrecipe.api import load_recipe
    from wanrecipe.batch import BatchGraph, as_rows, execute_batch, load_rows_recipes
    from wanrecipe.report.events import Event
    from wanrecipe.runner import BackendChoice

    folder = folder_with_recipe(tmp_path)
    rows = [{"key": f"r{i}", "colors": f"colors {i}"} for i in range(6)]
    loaded = load_rows_recipes(folder / "recipe.yaml", as_rows(rows), load_recipe)
    graph = BatchGraph(loaded[0].recipe.path, loaded)
    events: list[Event] = []
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
        record = await execute_batch(
            graph,
            backend=BackendChoice(kind="url", base_url=emu.base_url, api_key="sk-team"),
            run_dir=folder / "out",
            state_dir=folder / "state",
            on_event=events.append,
            claims=PostgresClaims(pg_url),
            max_usd=wire.PRICE_PER_IMAGE_USD * 5,
        )
        stats = emu.stats()
    assert stats["billed_images"] == 5 == record.images_billed  # 4 + the 1 the budget left
    assert record.status == "budget"
    assert [r.status for r in record.rows].count("ok") == 5
    started = [e for e in events if e.kind == "run_started"]
    finished = [e for e in events if e.kind == "run_finished"]
    assert len(started) == 1 and started[0].data["rows"] == 6
    assert len(finished) == 1 and finished[0].data["rows_ok"] == 5
    done = [e.data["rows_done"] for e in events if e.kind == "row" and e.state == "ok"]
    assert done == sorted(done) and done[-1] == 5
    on_disk = json.loads((folder / "out" / "run.json").read_text())
    assert len(on_disk["rows"]) == 6 and on_disk["images_billed"] == 5
    # The row the budget stopped is free again for anyone.
    assert sorted(s for s, _ in table(pg_url).values()) == ["done"] * 5 + ["todo"]


@pytest.mark.slow
def test_two_cli_workers_on_one_postgres_state_split_the_batch(tmp_path: Path, pg_url: str):
    """`wanrecipe run --batch` twice with one WANRECIPE_STATE=postgresql://...: the journal,
    the quota ledger and the rows all in the database; each row run once, within the quota
    (the emulator refuses anything over it)."""
    folder = folder_with_recipe(tmp_path)
    (folder / "rows.csv").write_text(
        "key,colors\n" + "".join(f"r{i},colors {i}\n" for i in range(8)), encoding="utf-8"
    )
    env = {**os.environ, "WANRECIPE_STATE": pg_url, "DASHSCOPE_API_KEY": "sk-team"}
    env.pop("WANRECIPE_STATE_DIR", None)
    config = EmulatorConfig(latency=1.0, engine_time_budget=0.2, over_concurrency="reject")
    with EmulatorThread(config) as emu:
        argv = ["run", "recipe.yaml", "--batch", "rows.csv", "--base-url", emu.base_url]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "wanrecipe", *argv, "--out", f"out-{name}", "--json"],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("a", "b")
        ]
        outputs = [p.communicate(timeout=300) for p in procs]
        stats = emu.stats()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    ran = [
        {r["key"] for r in json.loads((folder / f"out-{n}" / "run.json").read_text())["rows"]
         if r["status"] == "ok"}
        for n in ("a", "b")
    ]  # fmt: skip
    assert not ran[0] & ran[1] and ran[0] | ran[1] == {f"r{i}" for i in range(8)}
    assert stats["submissions"]["accepted"] == 8 and stats["submissions"]["refused"] == 0
    assert stats["tasks"]["peak_running"] <= 2
    assert {s for s, _ in table(pg_url).values()} == {"done"}


def test_claims_survive_a_dropped_connection(pg_url: str) -> None:
    claims = PostgresClaims(pg_url)
    try:
        claims.register("batch-a", KEYS)
        assert claims.claim(2) == KEYS[:2]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        claims.finish("r0", "ok")  # reconnects and does it
        assert claims.claim(2) == ["r1", "r2"]
        assert table(pg_url)["r0"][0] == "done"
    finally:
        claims.close()
