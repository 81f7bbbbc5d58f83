"""The fault matrix (#14): a 12-step recipe under each of the emulator's transient fault kinds
alone, then all of them at 20% together, 3 fault seeds each.

Every run must end ``ok`` with every output present and byte-identical to a fault-free run, and
the service must have billed no more images than there are outputs plus retried FAILED tasks
(the record saying exactly what the service billed). All runs go at once, each against its own
emulator on 127.0.0.1 port 0, sharing one engine process pool; cheap functions on 512² inputs
keep the whole matrix to tens of seconds.

``task.inspection`` is not in the matrix: DataInspectionFailed is the service's verdict on the
content, final by design (retrying it would pay for nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runs import make_image
from wanrecipe.api import load_recipe
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import running_emulator
from wanrecipe.executor.polling import PollPolicy
from wanrecipe.executor.retry import RetryPolicy
from wanrecipe.executor.scheduler import RunOptions
from wanrecipe.report.record import RunRecord
from wanrecipe.runner import BackendChoice, execute

TRANSIENT = (
    "submit.429",
    "submit.500",
    "submit.drop",
    "submit.lost",
    "query.500",
    "query.503",
    "query.504",
    "task.error",
    "task.timeout",
    "output.timeout",
    "download.500",
    "download.expired",
)
SEEDS = (1, 2, 3)
CASES: list[tuple[str, str, int]] = (
    [(kind, f"{kind}=25%", seed) for kind in TRANSIENT for seed in SEEDS]
    + [("all at 20%", ",".join(f"{k}=20%" for k in TRANSIENT), seed) for seed in SEEDS]
    # The two reported cases: the first two submits lost, the first two downloads expired.
    + [("submit.lost first 2", "submit.lost=first:2", 0)]
    + [("download.expired first 2", "download.expired=first:2", 0)]
)

#: Fast backoff; FAILED tasks (free at DashScope) retried more than by default, for the
#: fault rates here are far beyond any real service's.
OPTIONS = RunOptions(
    retry=RetryPolicy(base=0.05, cap=0.3, throttle_base=0.2, throttle_cap=1.0),
    poll=PollPolicy(prior_low=0.05, prior_high=2.0, early_checks=()),
    task_attempts=8,
    interrupt_grace_s=5.0,
    # The emulator's task list shows a task the moment it exists: no need to wait long.
    lost_list_delays=(0.1, 0.3),
)


def recipe_text() -> str:
    """Four chains of three cheap steps (12 steps), each with its own fixed seed."""
    lines = ["version: 1", "name: matrix", "steps:"]
    seed = 0
    for chain in range(4):
        seed += 1
        lines += [
            f"  edit{chain}:",
            "    function: description_edit",
            "    image: in.png",
            f"    prompt: make it brighter {chain}",
            f"    parameters: {{seed: {seed}, strength: 0.4}}",
        ]
        seed += 1
        lines += [
            f"  sharp{chain}:",
            "    function: super_resolution",
            f'    image: "{{{{ steps.edit{chain}.image }}}}"',
            "    prompt: sharper",
            f"    parameters: {{seed: {seed}, upscale_factor: 1}}",
        ]
        seed += 1
        lines += [
            f"  clean{chain}:",
            "    function: remove_watermark",
            f'    image: "{{{{ steps.sharp{chain}.image }}}}"',
            "    prompt: remove the text",
            f"    parameters: {{seed: {seed}}}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    name: str
    record: RunRecord
    stats: dict[str, Any]
    digests: dict[str, list[str]]  # step -> sha256 of each file in the run directory


async def run_case(root: Path, name: str, faults: str, seed: int, pool: Executor) -> Outcome:
    root.mkdir(parents=True)
    make_image(root / "in.png")
    (root / "recipe.yaml").write_text(recipe_text(), encoding="utf-8")
    config = EmulatorConfig(faults=faults, fault_seed=seed, engine_time_budget=0.2)
    async with running_emulator(config, executor=pool) as emu:
        record = await execute(
            load_recipe(root / "recipe.yaml"),
            backend=BackendChoice("url", emu.base_url),
            run_dir=root / "run",
            options=OPTIONS,
            state_dir=root / "state",
        )
        stats = emu.stats()
    digests = {
        sid: [
            hashlib.sha256((root / "run" / r.path).read_bytes()).hexdigest()
            if (root / "run" / r.path).is_file()
            else "missing"
            for r in step.results
        ]
        for sid, step in record.steps.items()
    }
    return Outcome(name, record, stats, digests)


#: The matrix in three parts (every third case), so that the suite's workers share them out;
#: each part has its own fault-free run to compare bytes with.
PARTS = 3


@pytest.mark.timeout(240)
@pytest.mark.parametrize("part", range(PARTS))
async def test_fault_matrix(tmp_path: Path, engine_pool: Executor, part: int) -> None:
    pool = engine_pool  # the session's (tests/runs.py)
    cases = CASES[part::PARTS]
    baseline, *outcomes = await asyncio.gather(
        run_case(tmp_path / "baseline", "no faults", "", 0, pool),
        *(
            run_case(tmp_path / f"case{i}", f"{name} (seed {seed})", faults, seed, pool)
            for i, (name, faults, seed) in enumerate(cases)
        ),
    )
    assert baseline.record.status == "ok"
    assert len(baseline.digests) == 12 and all(len(d) == 1 for d in baseline.digests.values())
    problems: list[str] = []
    injected = 0
    for out in outcomes:
        rec, stats = out.record, out.stats
        injected += sum(stats["faults"].values())
        if rec.status != "ok":
            errors = {k: s.error for k, s in rec.steps.items() if s.error}
            problems.append(f"{out.name}: run {rec.status}: {errors}")
            continue
        for sid, want in baseline.digests.items():
            if out.digests.get(sid) != want:
                problems.append(f"{out.name}: {sid} differs from the fault-free run")
        failed_tasks = stats["tasks"]["reached"].get("FAILED", 0)
        billed = stats["billed_images"]
        if billed > 12 + failed_tasks:
            problems.append(f"{out.name}: billed {billed} for 12 outputs, {failed_tasks} FAILED")
        if rec.images_billed != billed:
            problems.append(f"{out.name}: record says {rec.images_billed}, service billed {billed}")
    assert not problems, "\n".join(problems)
    assert injected > len(cases), "the faults hardly fired: the matrix tests nothing"


def test_the_parts_cover_the_matrix() -> None:
    parts = [CASES[p::PARTS] for p in range(PARTS)]
    assert sorted(c for part in parts for c in part) == sorted(CASES)
    assert len(CASES) == len(TRANSIENT) * len(SEEDS) + len(SEEDS) + 2
