"""Batch benchmark: scheduler overhead, memory and slot utilisation of a batch run.

(a) 200 rows x 3 steps on the emulator (a separate `wanrecipe serve` process, fast latency,
    quota raised to 50/50): CPU time this process spends per task (the scheduler, client,
    journal and records: the overhead)   target <= 5 ms; peak RSS   target <= 250 MB.
(b) 20 rows x 3 steps at the real quota 2/2 with a fixed 1 s latency (emulator in a
    thread): slot utilisation = task time on the service / (2 slots x the span from the
    first submit to the last end)   target >= 95 %.

  python benchmarks/bench_batch.py           # about 2 minutes on 2 cores
  python benchmarks/bench_batch.py --quick   # 60 rows in (a), 10 rows in (b)

The recipe's three steps use engines that take about 10 ms on a 512 px picture
(remove_watermark, super_resolution x1, expand 1.0): "near-zero latency" in (a) and "a fixed
1 s latency" in (b) hold only if the engines' own time is small. (stylization_all, used
before, takes about 1 s of CPU per image on this machine: 600 of them queued for minutes on
two engine workers, and the client's polling during that wait was counted as its overhead.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

from wanrecipe import wire
from wanrecipe.api import load_recipe
from wanrecipe.batch import BatchGraph, Row, execute_batch, load_rows_recipes
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.executor.polling import PollPolicy
from wanrecipe.executor.quota import Quota
from wanrecipe.executor.scheduler import RunOptions
from wanrecipe.runner import BackendChoice

RECIPE = """\
version: 1
name: bench-batch
params:
  photo: {type: image, default: in.png}
  seed: {type: integer, default: 1}
steps:
  a:
    function: remove_watermark
    image: "{{ params.photo }}"
    prompt: remove the text
    parameters: {seed: "{{ params.seed }}"}
  b:
    function: super_resolution
    image: "{{ steps.a.image }}"
    prompt: Image super resolution
    parameters: {seed: "{{ params.seed }}", upscale_factor: 1}
  c:
    function: expand
    image: "{{ steps.b.image }}"
    prompt: a wider view
    parameters: {seed: "{{ params.seed }}", left_scale: 1.0}
"""


def make_graph(folder: Path, rows: int, seed0: int) -> BatchGraph:
    Image.new("RGB", (512, 512), (90, 120, 150)).save(folder / "in.png")
    path = folder / "bench-batch.yaml"
    path.write_text(RECIPE)
    batch = [Row(f"r{i:03d}", i, {"seed": seed0 + i}) for i in range(rows)]
    return BatchGraph(path, load_rows_recipes(path, batch, load_recipe))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVE = """
import sys, time
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
if __name__ == "__main__":
    config = EmulatorConfig(port=int(sys.argv[1]), latency=0.0, rps=50, rps_burst=50,
                            concurrency=50, query_qps=0, engine_time_budget=0.02)
    with EmulatorThread(config):
        time.sleep(3600)
"""


def serve(port: int) -> subprocess.Popen[bytes]:
    """The emulator in a process of its own, so this process's CPU time is the client's."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/emulator/stats", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the emulator did not start")


def stats(base: str) -> dict:
    with urllib.request.urlopen(base.replace("/api/v1", "/emulator/stats"), timeout=5) as r:
        return json.loads(r.read())


def options(quota: Quota) -> RunOptions:
    return RunOptions(quota=quota, poll=PollPolicy(prior_low=0.05, prior_high=2.0))


def bench_overhead(rows: int, work: Path) -> dict[str, float]:
    port = free_port()
    proc = serve(port)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        load_t0 = time.process_time()
        graph = make_graph(work, rows, seed0=int(time.time()))
        load_cpu = time.process_time() - load_t0
        quota = Quota(submit_rps=50, concurrency=50, query_qps=500)
        cpu0, t0 = time.process_time(), time.monotonic()
        record = asyncio.run(
            execute_batch(
                graph, backend=BackendChoice("url", base), run_dir=work / "out",
                options=options(quota), state_dir=work / "state",
            )
        )  # fmt: skip
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        served = stats(base)
        accepted = served["submissions"]["accepted"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    tasks = rows * 3
    assert record.status == "ok", record.status
    assert accepted == tasks, (accepted, tasks)
    return {
        "tasks": tasks,
        "cpu_ms_per_task": 1000 * cpu / tasks,
        "load_ms_per_row": 1000 * load_cpu / rows,
        "wall_s": wall,
        "queries_per_task": served["queries"] / tasks,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def bare_chains(base: str, image: Path, rows: int, seed0: int, out: Path) -> int:
    """The floor (``bare_client.py``) for the batch: per row, three tasks in a chain, each
    submitted with the previous one's result URL. Returns the number of task queries."""
    import base64

    import aiohttp
    from bare_client import BareClient  # beside this script, on its sys.path

    uri = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    steps = (
        ("remove_watermark", "remove the text", {}),
        ("super_resolution", "Image super resolution", {"upscale_factor": 1}),
        ("expand", "a wider view", {"left_scale": 1.0}),
    )

    async def row(client: BareClient, running: asyncio.Semaphore, i: int) -> None:
        ref = uri
        for step, (function, prompt, extra) in enumerate(steps):
            body = {
                "model": "wanx2.1-imageedit",
                "parameters": {"seed": seed0 + i, **extra},
                "input": {"function": function, "prompt": prompt, "base_image_url": ref},
            }
            async with running:
                ref = await client.task(
                    body, str(out / f"{i}-{step}.png"), first_poll=0.05, poll_every=0.05
                )

    out.mkdir(parents=True, exist_ok=True)
    running = asyncio.Semaphore(50)
    async with aiohttp.ClientSession() as session:
        client = BareClient(session, base)
        await asyncio.gather(*(row(client, running, i) for i in range(rows)))
    return client.queries


def bench_floor(rows: int, work: Path) -> dict[str, float]:
    """The bare client's CPU for the same batch, in this process, on a fresh emulator."""
    port = free_port()
    proc = serve(port)
    base = f"http://127.0.0.1:{port}/api/v1"
    (work / "bare").mkdir()
    image = work / "bare" / "in.png"
    Image.new("RGB", (512, 512), (90, 120, 150)).save(image)
    try:
        cpu0 = time.process_time()
        seed0 = int(time.time()) + 500_000
        queries = asyncio.run(bare_chains(base, image, rows, seed0, work / "bare"))
        cpu = time.process_time() - cpu0
        accepted = stats(base)["submissions"]["accepted"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    tasks = rows * 3
    assert accepted == tasks, (accepted, tasks)
    return {"cpu_ms_per_task": 1000 * cpu / tasks, "queries_per_task": queries / tasks}


def bench_utilisation(rows: int, work: Path) -> dict[str, float]:
    from wanrecipe import wire as w

    graph = make_graph(work, rows, seed0=int(time.time()) + 10_000)
    config = EmulatorConfig(latency=1.0, engine_time_budget=0.2)
    with EmulatorThread(config) as emu:
        record = asyncio.run(
            execute_batch(
                graph, backend=BackendChoice("url", emu.base_url), run_dir=work / "out-u",
                options=RunOptions(), state_dir=work / "state-u",
            )
        )  # fmt: skip
    assert record.status == "ok", record.status
    spans = []
    for row in record.rows:
        assert row.record is not None
        for step in row.record.steps.values():
            attempt = step.attempts[-1]
            start = w.parse_time(attempt.submit_time or "")
            end = w.parse_time(attempt.end_time or "")
            assert start is not None and end is not None
            spans.append((start.timestamp(), end.timestamp()))
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    busy = sum(e - s for s, e in spans)
    return {
        "tasks": len(spans),
        "utilisation": busy / (wire.CONCURRENCY * (last - first)),
        "span_s": last - first,
        "ideal_s": len(spans) * 1.0 / wire.CONCURRENCY,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows_a, rows_b = (60, 10) if args.quick else (200, 20)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["WANRECIPE_STATE_DIR"] = str(work / "state")
        a = bench_overhead(rows_a, work)
        floor = bench_floor(rows_a, work)
        b = bench_utilisation(rows_b, work)
    print(f"{'measure':<58} {'value':>10} {'target':>10}")
    print("-" * 80)
    rows_table = [
        (f"(a) {rows_a}x3 batch, quota 50/50: process CPU per task",
         f"{a['cpu_ms_per_task']:.2f} ms", ""),
        ("(a) a bare aiohttp client, same requests (the floor)",
         f"{floor['cpu_ms_per_task']:.2f} ms", ""),
        ("(a) scheduler overhead per task (CPU over the floor)",
         f"{a['cpu_ms_per_task'] - floor['cpu_ms_per_task']:.2f} ms", "<= 5 ms"),
        ("(a) peak RSS of the client process", f"{a['rss_mb']:.0f} MB", "<= 250 MB"),
        ("(a) loading and checking the rows, CPU per row", f"{a['load_ms_per_row']:.2f} ms", ""),
        (f"(a) wall time for {a['tasks']:.0f} tasks", f"{a['wall_s']:.1f} s", ""),
        ("(a) task queries per task (the floor's)",
         f"{a['queries_per_task']:.1f}", f"({floor['queries_per_task']:.1f})"),
        (f"(b) {rows_b}x3 batch, quota 2/2, 1 s tasks: slot utilisation",
         f"{100 * b['utilisation']:.1f} %", ">= 95 %"),
        ("(b) span first submit -> last end (ideal)",
         f"{b['span_s']:.1f} s", f"{b['ideal_s']:.1f} s"),
    ]  # fmt: skip
    for name, value, target in rows_table:
        print(f"{name:<58} {value:>10} {target:>10}")


if __name__ == "__main__":
    main()
