"""Team-mode benchmark: a 40-task batch split over 4 worker processes, against the quota's ideal.

The workers are real ``wanrecipe run team.yaml --batch rows.csv --state URL --blobs s3://...``
processes; the emulator (1 account, quota 2 submits/s and 2 running, tasks of a fixed 1 s) runs
in this process, Postgres and the bucket (moto) are throwaway servers on 127.0.0.1 started from
tests/services.py (or ``--pg-url``). Measured:

- makespan (the emulator's engine processes warmed first, so every task takes the 1 s the
  ideal assumes): from the first submit the emulator accepted until the batch is done (the last
  worker's ``run_finished``: every row done and recorded), against the quota's ideal for 40
  tasks (the 2/s rate and the 2 slots: max(20 x 1 s, 19 s + 1 s) = 20 s)   target <= 1.10;
- beside it: the service span (first submit to the last task's end on the emulator), the
  time to the last worker's exit (report.html and the lock file written), and the start-up
  (launch to the first submit: interpreters, Postgres, the bucket), which the ideal leaves out;
- where the account's 2 slots went between the first and the last submit (sampled every 20 ms
  from the ledger's table and the emulator): a task running, held by a worker with no task
  running (grant to submit, task end to release), or free in the ledger;
- the ledger's grant latency p50/p99, one process and 4 at once (``try_slot`` + release).

    python benchmarks/bench_team.py            # about a minute on 2 cores
    python benchmarks/bench_team.py --tasks 20 # a shorter batch
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402
from tests.team.workers import make_batch, read_batch, start_worker  # noqa: E402
from wanrecipe.emulator.config import EmulatorConfig  # noqa: E402
from wanrecipe.emulator.server import EmulatorThread  # noqa: E402

LATENCY = 1.0
RATE = 2
SLOTS = 2


def ideal(tasks: int, latency: float = LATENCY) -> float:
    """The quota's bound: submits paced at RATE per second (2 at once at the start), at most
    SLOTS running; whichever is slower."""
    by_rate = math.ceil(tasks / RATE) - 1 + latency
    by_slots = math.ceil(tasks / SLOTS) * latency
    return max(by_rate, by_slots)


@contextlib.contextmanager
def bucket() -> Iterator[str]:
    reason = services.moto_missing()
    if reason:
        raise SystemExit(f"bench_team: {reason}")
    with services.moto_server() as server:
        os.environ.update(
            AWS_ENDPOINT_URL=server.endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            AWS_ALLOW_HTTP="true",
        )
        yield "s3://" + server.create_bucket() + "/bench"


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    reason = services.postgres_missing()
    if reason:
        raise SystemExit(f"bench_team: {reason} (or pass --pg-url)")
    with services.postgres_cluster() as cluster:
        yield cluster.create_database()


class SlotSampler(threading.Thread):
    """Samples, every 20 ms, the slots the Postgres ledger has granted and the tasks the
    emulator runs: where the account's two slots went (a task running; held by a worker with
    no task running: between grant and submit, or between the task's end and the release;
    free in the ledger)."""

    def __init__(self, url: str | None, emu: EmulatorThread) -> None:
        super().__init__(daemon=True)
        self.url, self.emu = url, emu
        self.samples: list[tuple[float, int, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True) if self.url else None
        sql = "SELECT count(*) FROM quota_leases WHERE kind = 'slot'"
        while not self.stop.is_set():
            held = -1
            if conn is not None:
                with contextlib.suppress(psycopg.Error):  # the table appears with the 1st grant
                    held = int(conn.execute(sql).fetchone()[0])  # type: ignore[index]
            stats = self.emu.stats()
            running, accepted = stats["tasks"]["running"], stats["submissions"]["accepted"]
            self.samples.append((time.monotonic(), held, running, accepted))
            time.sleep(0.02)
        if conn is not None:
            conn.close()

    def shares(self, tasks: int) -> dict[str, float]:
        """Slot-seconds / 2 from the first accepted submit to the last, per use."""
        got = {"running": 0.0, "held_idle": 0.0, "free": 0.0}
        window = [s for s in self.samples if 1 <= s[3] < tasks]
        for (t0, held, running, _), (t1, *_rest) in itertools.pairwise(window):
            dt = (t1 - t0) / SLOTS
            got["running"] += dt * running
            if held >= 0:
                got["held_idle"] += dt * max(0, min(held, SLOTS) - running)
                got["free"] += dt * max(0, SLOTS - held)
        return got


@contextlib.contextmanager
def warm_engines(config: EmulatorConfig) -> Iterator[Executor]:
    """The emulator's engine processes, started and through one edit each before the
    workers start: the ideal assumes tasks of LATENCY seconds from the first one, and a cold
    engine process (start, imports, first edit) makes the first tasks take longer."""
    import io

    from PIL import Image

    from wanrecipe.emulator.app import make_executor
    from wanrecipe.emulator.engines import EditRequest, render

    buf = io.BytesIO()
    Image.new("RGB", (512, 512), (90, 120, 150)).save(buf, format="PNG")
    pool = make_executor(config.executor, config.workers)
    try:
        # The package's own function: the engine processes never import this __main__.
        edit = EditRequest("description_edit", buf.getvalue(), "warm", {}, 1, time_budget=0.1)
        jobs = [pool.submit(render, edit) for _ in range(2 * config.workers)]
        for job in jobs:
            job.result(timeout=120)
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def makespan(
    tasks: int, workers: int, state: list[str], blobs: str, url: str | None
) -> dict[str, float]:
    config = EmulatorConfig(latency=LATENCY, engine_time_budget=0.1, over_concurrency="reject")
    with (
        tempfile.TemporaryDirectory() as tmp,
        warm_engines(config) as engines,
        EmulatorThread(config, executor=engines) as emu,
    ):
        batch = make_batch(Path(tmp) / "work", rows=tasks, one_step=True)
        outs = [Path(tmp) / f"worker{i}" for i in range(workers)]
        sampler = SlotSampler(url, emu)
        sampler.start()
        t0 = time.monotonic()
        procs = [start_worker(batch, emu.base_url, out, state, blobs) for out in outs]
        finished: list[float] = []
        exits: list[float] = []
        errors: list[str] = []

        def follow(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None and proc.stderr is not None
            for line in proc.stdout:
                if line.startswith('{"event": "run_finished"'):
                    finished.append(time.monotonic())
            errors.append(proc.stderr.read())
            proc.wait()
            exits.append(time.monotonic())

        threads = [threading.Thread(target=follow, args=(p,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)
        sampler.stop.set()
        sampler.join()
        stats = emu.stats()
        t_stats = time.monotonic()
        if any(p.returncode != 0 for p in procs):
            raise SystemExit(
                "bench_team: a worker failed:\n" + "\n".join(e[-2000:] for e in errors)
            )
        done = {k for out in outs for k, r in read_batch(out).items() if r.status == "ok"}
    subs = stats["submissions"]
    if subs["accepted"] != tasks or len(done) != tasks or len(finished) != workers:
        raise SystemExit(f"bench_team: {subs['accepted']} submits, {len(done)} rows done")
    # The emulator's times are seconds since it started (its uptime was read at t_stats).
    first = t_stats - stats["uptime_s"] + min(subs["accepted_times"])
    return {
        "startup": first - t0,
        "makespan": max(finished) - first,
        "exit": max(exits) - first,
        "service": max(subs["accepted_times"]) + LATENCY - min(subs["accepted_times"]),
        "refused": float(subs["refused"]),
        "peak_running": float(stats["tasks"]["peak_running"]),
        "peak_1s": float(subs["peak_accepted_1s"]),
        **sampler.shares(tasks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pg-url", help="an existing empty Postgres database to use")
    parser.add_argument(
        "--state-dir", action="store_true", help="a shared SQLite state dir instead of Postgres"
    )
    parser.add_argument("--n", type=int, default=200, help="grants per client for the latency")
    args = parser.parse_args()
    with bucket() as blobs, postgres(None if args.state_dir else args.pg_url) as url:
        with tempfile.TemporaryDirectory() as tmp:
            state = ["--state-dir", tmp] if args.state_dir else ["--state", url]
            got = makespan(args.tasks, args.workers, state, blobs, None if args.state_dir else url)
        grants = grant_table(url, args.n)
    best = ideal(args.tasks)
    print(f"team mode: {args.tasks} tasks over {args.workers} processes, quota 2/s + 2 running, "
          f"tasks of {LATENCY:g} s, state {'SQLite dir' if args.state_dir else 'Postgres'}, "
          "blobs S3 (moto)")  # fmt: skip
    ratio = got["makespan"] / best
    rows = [
        ("quota ideal (s)", f"{best:.2f}", "", ""),
        ("makespan: first submit -> batch done (s)", f"{got['makespan']:.2f}", "", ""),
        ("makespan / ideal", f"{ratio:.3f}", "<= 1.10", "met" if ratio <= 1.10 else "NOT met"),
        ("service span: first submit -> last task end", f"{got['service']:.2f}", "", ""),
        ("service span / ideal", f"{got['service'] / best:.3f}", "", ""),
        ("first submit -> last worker exit (s)", f"{got['exit']:.2f}", "", ""),
        ("startup: launch -> first submit (s)", f"{got['startup']:.2f}", "", ""),
        ("slot time: a task running (s)", f"{got['running']:.2f}", "", ""),
        ("slot time: held, no task running (s)", f"{got['held_idle']:.2f}", "", ""),
        ("slot time: free in the ledger (s)", f"{got['free']:.2f}", "", ""),
        ("refused / peak running / peak submits 1 s",
         f"{got['refused']:.0f}/{got['peak_running']:.0f}/{got['peak_1s']:.0f}", "0/2/2", ""),
    ]  # fmt: skip
    print(f"{'measure':46} {'value':>10} {'target':>8}")
    for name, value, target, verdict in rows:
        print(f"{name:46} {value:>10} {target:>8} {verdict}")
    for name, count, p50, p99 in grants:
        print(f"{name:46} n={count:<5} p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms")


def grant_table(url: str, n: int) -> list[tuple[str, int, float, float]]:
    """The ledger's grant latency, via bench_ledger's clients (one process, then 4)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_ledger import grant_latencies, pct  # type: ignore[import-not-found]
    except ImportError:
        return []
    rows = []
    for clients in (1, 4):
        t = grant_latencies("postgres", url, clients, n)
        rows.append((f"ledger grant, {clients} process(es)", len(t), pct(t, 50), pct(t, 99)))
    return rows


if __name__ == "__main__":
    main()
