"""Task queries per second on loopback while the engines are busy.

The server runs as its own process (``python -m wanrecipe serve``) with the query limit off;
this process is the load generator. Heavy tasks keep both engine workers computing throughout
the measurement, which the script checks in /emulator/stats before and after.

    .venv/bin/python benchmarks/bench_emulator.py [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
import numpy as np
from PIL import Image

KEY = "sk-bench"
SUBMIT = "/services/aigc/image2image/image-synthesis"


def _heavy_image() -> str:
    # Noise is the worst case for the colourisation engine: seconds per image at 1024².
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((1024, 1024, 3)) * 255).astype("uint8")).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def start_server(workers: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    args = [sys.executable, "-m", "wanrecipe", "serve", "--port", "0", "--quiet",
            "--query-qps", "0", "--rps", "0", "--concurrency", str(workers),
            "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line}")
    return proc, match.group(1)


async def hammer(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], until: float
) -> list[float]:
    latencies = []
    while (now := time.perf_counter()) < until:
        async with session.get(url, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise SystemExit(f"query answered {r.status}")
        latencies.append(time.perf_counter() - now)
    return latencies


async def bench(base: str, seconds: float, connections: int, heavy: int) -> dict[str, Any]:
    origin = base.removesuffix("/api/v1")
    auth = {"Authorization": f"Bearer {KEY}"}
    submit_headers = {**auth, "X-DashScope-Async": "enable"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        payload = {
            "model": "wanx2.1-imageedit",
            "input": {"function": "colorization", "prompt": "", "base_image_url": _heavy_image()},
            "parameters": {"n": 1},
        }
        ids = []
        for _ in range(heavy):
            async with session.post(base + SUBMIT, json=payload, headers=submit_headers) as r:
                ids.append((await r.json())["output"]["task_id"])
        await asyncio.sleep(1.0)  # let the workers start and pick up the tasks

        async def running() -> int:
            async with session.get(origin + "/emulator/stats") as r:
                return int((await r.json())["tasks"]["running"])

        busy_before = await running()
        url = f"{base}/tasks/{ids[0]}"
        until = time.perf_counter() + seconds
        t0 = time.perf_counter()
        per_worker = await asyncio.gather(
            *(hammer(session, url, auth, until) for _ in range(connections))
        )
        elapsed = time.perf_counter() - t0
        busy_after = await running()
    latencies = sorted(x for xs in per_worker for x in xs)
    return {
        "queries": len(latencies),
        "seconds": round(elapsed, 2),
        "queries_per_second": round(len(latencies) / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "connections": connections,
        "tasks_running_before": busy_before,
        "tasks_running_after": busy_after,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="engine processes")
    parser.add_argument("--heavy", type=int, default=30, help="heavy tasks submitted first")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    proc, base = start_server(opts.workers)
    try:
        result = asyncio.run(bench(base, opts.seconds, opts.connections, opts.heavy))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if opts.json:
        print(json.dumps(result))
        return
    print(f"task queries/s on loopback: {result['queries_per_second']}")
    print(
        f"  {result['queries']} queries in {result['seconds']} s over {opts.connections} "
        f"connections; p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
    )
    print(
        f"  engine tasks running: {result['tasks_running_before']} before, "
        f"{result['tasks_running_after']} after; {result['cpus']} CPUs"
    )


if __name__ == "__main__":
    main()
