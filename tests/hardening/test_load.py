"""Load: 50 recipe runs at once in one process, and 4 processes against one emulator. Every
run finishes (bounded by timeouts: no deadlock), the emulator's quota holds (its own stats:
peak running tasks, accepted submissions per second), nothing is billed twice, and memory
stays bounded."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

from wanrecipe import load_recipe
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.executor.quota import Quota
from wanrecipe.executor.scheduler import RunOptions
from wanrecipe.runner import BackendChoice, execute

from .helpers import emulator_stats, png_bytes

ONE_STEP = """\
version: 1
name: load
params:
  seed: {type: integer, default: 1}
steps:
  c:
    function: colorization
    image: in.png
    parameters: {seed: "{{ params.seed }}"}
"""
THREE_STEPS = """\
version: 1
name: load{n}
steps:
  a:
    function: colorization
    image: in.png
    parameters: {{seed: {n}}}
  b:
    function: colorization
    image: in.png
    parameters: {{seed: {m}}}
  c:
    function: super_resolution
    image: "{{{{ steps.a.image }}}}"
    prompt: Image super resolution
"""
EMU_RPS = 25.0
EMU_BURST = 10
EMU_CONCURRENCY = 10
#: The account's quota as 50 runs on one state dir share it (the client's side).
SHARED = Quota(submit_rps=5.0, concurrency=4, query_qps=2.0)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quota_held(stats: dict) -> None:
    assert stats["tasks"]["peak_running"] <= EMU_CONCURRENCY
    # The emulator's bucket allows its burst on top of the rate.
    assert stats["submissions"]["peak_accepted_1s"] <= EMU_RPS + EMU_BURST


def test_fifty_runs_in_one_process(tmp_path: Path):
    (tmp_path / "recipe.yaml").write_text(ONE_STEP, encoding="utf-8")
    (tmp_path / "in.png").write_bytes(png_bytes((512, 512), noise=False))
    # Engines in processes: in threads they would share this process's GIL with the runs.
    config = EmulatorConfig(executor="process", workers=2, rps=EMU_RPS, rps_burst=EMU_BURST,
                            concurrency=EMU_CONCURRENCY)  # fmt: skip
    recipes = [load_recipe(tmp_path / "recipe.yaml", {"seed": str(i)}) for i in range(50)]
    with EmulatorThread(config) as emu:
        choice = BackendChoice("url", emu.base_url)
        # One account, one state dir: the 50 runs share this quota through the state dir's
        # ledger (quota.sqlite), as every run against a server but the embedded emulator does.
        # (Given as each run's share, 0.2 submits/s and 1 slot, it was the account's: 50 tasks
        # one after another, 250 s, which looked like a hang.) Stricter than the emulator's
        # own limits, so the emulator's stats show whether the ledger held it.
        options = RunOptions(quota=SHARED)
        rss_before = _rss_mb()

        async def all_runs() -> list:
            return await asyncio.wait_for(
                asyncio.gather(
                    *(
                        execute(
                            r,
                            backend=choice,
                            run_dir=tmp_path / "runs" / str(i),
                            options=options,
                            state_dir=tmp_path / "state",
                        )
                        for i, r in enumerate(recipes)
                    )
                ),
                timeout=240,
            )

        records = asyncio.run(all_runs())
        stats = emulator_stats(emu.origin)
    assert [r.status for r in records] == ["ok"] * 50
    assert all((tmp_path / "runs" / str(i) / "c.png").exists() for i in range(50))
    _quota_held(stats)
    # The shared quota held across the 50 runs, counted by the server.
    assert stats["tasks"]["peak_running"] <= SHARED.concurrency
    assert stats["submissions"]["peak_accepted_1s"] <= SHARED.submit_rps
    assert stats["submissions"]["refused"] == 0  # the client never sent what would be refused
    assert stats["billed_images"] == 50  # one task per run: nothing paid twice
    assert _rss_mb() - rss_before < 400


def test_four_processes_against_one_emulator(tmp_path: Path):
    config = EmulatorConfig(executor="thread", workers=2, rps=EMU_RPS, rps_burst=EMU_BURST,
                            concurrency=EMU_CONCURRENCY)  # fmt: skip
    with EmulatorThread(config) as emu:
        procs = []
        for n in range(4):
            where = tmp_path / f"p{n}"
            where.mkdir()
            (where / "recipe.yaml").write_text(
                THREE_STEPS.format(n=n + 1, m=n + 11), encoding="utf-8"
            )
            (where / "in.png").write_bytes(png_bytes((512, 512), noise=False))
            procs.append(where)
        import subprocess
        import sys

        running = [
            subprocess.Popen(
                [sys.executable, "-m", "wanrecipe", "run", "recipe.yaml", "--base-url",
                 emu.base_url, "--out", "out", "--state-dir", "state"],
                cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for where in procs
        ]  # fmt: skip
        results = [p.communicate(timeout=240) for p in running]
        stats = emulator_stats(emu.origin)
    for proc, (_, err) in zip(running, results, strict=True):
        assert proc.returncode == 0, err
    for where in procs:
        assert {p.name for p in (where / "out").glob("*.png")} == {"a.png", "b.png", "c.png"}
    _quota_held(stats)
    assert stats["billed_images"] == 12
    # Each client keeps to its own 2 tasks at once; together they used the server's room.
    assert stats["tasks"]["peak_running"] >= 2
