"""Scheduling benchmark: wanrecipe's runner against the ideal and against the official SDK.

Runs, side by side in one process, on the emulator (a thread, 127.0.0.1, port 0):
  (a) 12 independent steps, fixed 1 s latency, quota 2/2: makespan / ideal   (target <= 1.05)
  (b) 6 independent steps, fixed 9 s latency: wanrecipe makespan / SDK's (2 threads) (<= 0.85)
  (c) delay between a task's end and its result being noticed (median, p95) and queries per
      task, for wanrecipe and for the SDK (from (b)).

    python benchmarks/bench_schedule.py            # about 2 minutes
    python benchmarks/bench_schedule.py --quick    # (b) and (c) with 3 s tasks instead of 9 s
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone
from pathlib import Path

from PIL import Image

from wanrecipe import wire
from wanrecipe.api import load_recipe
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.images import to_data_uri
from wanrecipe.recipe.plan import estimate_wall_time
from wanrecipe.report.record import RunRecord
from wanrecipe.runner import BackendChoice, execute

UTC_OFFSET = 8.0  # the emulator's default zone for task timestamps


def make_recipe(folder: Path, steps: int, seed0: int = 0) -> Path:
    """``steps`` independent colorizations; distinct seeds, so nothing comes from the cache."""
    Image.new("RGB", (512, 512), (90, 120, 150)).save(folder / "in.png")
    lines = [
        f"  s{i:02d}: {{function: colorization, image: in.png, prompt: '', "
        f"parameters: {{seed: {seed0 + i}}}}}"
        for i in range(steps)
    ]
    path = folder / f"bench-{steps}-{seed0}.yaml"
    path.write_text("version: 1\nname: bench\nsteps:\n" + "\n".join(lines) + "\n")
    return path


def end_epoch(end_time: str) -> float:
    """A task timestamp ("YYYY-MM-DD HH:mm:ss.SSS" in the server's zone) as epoch seconds."""
    zone = timezone(timedelta(hours=UTC_OFFSET))
    parsed = wire.parse_time(end_time)
    assert parsed is not None, end_time
    return parsed.replace(tzinfo=zone).timestamp()


def run_wanrecipe(
    emu: EmulatorThread, recipe_path: Path, out: Path, state: Path
) -> tuple[float, RunRecord, float]:
    recipe = load_recipe(recipe_path)

    async def go() -> tuple[float, RunRecord, float]:
        t0_epoch = time.time()
        t0 = time.monotonic()
        record = await execute(
            recipe, backend=BackendChoice("url", emu.base_url), run_dir=out, state_dir=state
        )
        return time.monotonic() - t0, record, t0_epoch

    return asyncio.run(go())


def notice_delays_wanrecipe(record: RunRecord, t0_epoch: float) -> tuple[list[float], list[int]]:
    delays, queries = [], []
    for step in record.steps.values():
        attempt = step.attempts[-1]
        if attempt.end_time and attempt.noticed_at is not None:
            delays.append(t0_epoch + attempt.noticed_at - end_epoch(attempt.end_time))
            queries.append(attempt.queries)
    return delays, queries


def run_sdk(emu: EmulatorThread, image: Path, tasks: int) -> tuple[float, list[float], int]:
    import dashscope
    from dashscope import ImageSynthesis

    dashscope.base_http_api_url = emu.base_url
    data_uri = to_data_uri(image.read_bytes(), "image/png")
    delays: list[float] = []

    def one(i: int) -> None:
        rsp = ImageSynthesis.call(
            model=wire.MODEL,
            function="colorization",
            prompt="x",
            base_image_url=data_uri,
            api_key="sk-bench",
            seed=i,
            n=1,
        )
        noticed = time.time()
        assert rsp.status_code == 200 and rsp.output.task_status == "SUCCEEDED", rsp
        delays.append(noticed - end_epoch(rsp.output.end_time))

    before = emu.stats()["queries"]
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(tasks)))
    makespan = time.monotonic() - t0
    return makespan, delays, emu.stats()["queries"] - before


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, round(q * (len(data) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s tasks in (b) instead of 9 s")
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    long_latency = 3.0 if args.quick else 9.0
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # (a) 12 x 1 s at quota 2/2. The emulator's engine workers are started first (their
        # first task pays the imports); then a run with nothing learned ("cold") and one with
        # the durations the first run kept in its state dir ("warm").
        # The ideal: 12 tasks of 1 s on 2 slots cannot finish before 6 s, and the submission
        # rate (2 in any second) does not bind. The plan's estimate spaces submits 1/rps apart
        # and says 6.5 s; the runner is held to the stricter bound.
        ideal = math.ceil(12 / 2) * 1.0
        planned = estimate_wall_time(
            {f"s{i:02d}": () for i in range(12)}, submit_rps=2, concurrency=2, task_seconds=1.0
        )
        with EmulatorThread(EmulatorConfig(latency=1.0, over_concurrency="reject")) as emu:
            run_wanrecipe(emu, make_recipe(folder, 2, 1000), folder / "w", folder / "warmup")
            cold, record_a, _ = run_wanrecipe(
                emu, make_recipe(folder, 12, 0), folder / "a", folder / "state-a"
            )
            warm, record_b, _ = run_wanrecipe(
                emu, make_recipe(folder, 12, 100), folder / "a2", folder / "state-a"
            )
            stats = emu.stats()
        assert record_a.status == record_b.status == "ok"
        rows.append(
            (
                "(a) 12 x 1 s, quota 2/2: makespan, nothing learned",
                f"{cold:.2f} s",
                f"{cold / ideal:.3f} x ideal ({ideal:.2f} s; the plan says {planned:.2f} s)",
            )
        )
        rows.append(
            (
                "(a) 12 x 1 s, quota 2/2: makespan, durations kept",
                f"{warm:.2f} s",
                f"{warm / ideal:.3f} x ideal (target <= 1.05)",
            )
        )
        rows.append(
            (
                "(a) quota kept (peak running / peak submits per 1 s / refused)",
                f"{stats['tasks']['peak_running']} / "
                f"{stats['submissions']['peak_accepted_1s']} / "
                f"{stats['submissions']['refused']}",
                "",
            )
        )

        # (b) and (c): 6 x long tasks, wanrecipe vs the SDK with 2 threads.
        path6 = make_recipe(folder, 6, 200)
        with EmulatorThread(EmulatorConfig(latency=long_latency)) as emu:
            makespan_w, record_w, t0 = run_wanrecipe(emu, path6, folder / "b", folder / "state-b")
            delays_w, queries_w = notice_delays_wanrecipe(record_w, t0)
        with EmulatorThread(EmulatorConfig(latency=long_latency)) as emu:
            makespan_s, delays_s, queries_s = run_sdk(emu, folder / "in.png", 6)
        rows.append(
            (
                f"(b) 6 x {long_latency:g} s: wanrecipe makespan",
                f"{makespan_w:.2f} s",
                f"{makespan_w / makespan_s:.3f} x SDK (target <= 0.85)",
            )
        )
        rows.append(
            (f"(b) 6 x {long_latency:g} s: SDK call() x 2 threads", f"{makespan_s:.2f} s", "")
        )
        rows.append(
            (
                "(c) notice delay, wanrecipe: median / p95",
                f"{statistics.median(delays_w):.3f} / {pct(delays_w, 0.95):.3f} s",
                f"queries per task {statistics.mean(queries_w):.1f}",
            )
        )
        rows.append(
            (
                "(c) notice delay, SDK: median / p95",
                f"{statistics.median(delays_s):.3f} / {pct(delays_s, 0.95):.3f} s",
                f"queries per task {queries_s / 6:.1f}",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':<18}  ratio / note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<18}  {note}")


if __name__ == "__main__":
    main()
