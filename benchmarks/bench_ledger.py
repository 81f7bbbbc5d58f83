"""Quota ledger benchmark: how long a grant takes, alone and with 4 processes asking at once.

For the state-directory ledger (SQLite) and the Postgres ledger (a throwaway cluster on
127.0.0.1 started from tests/services.py, or ``--pg-url``), each client times ``try_slot``
(a granted answer: the quota is raised so nothing waits for a slot, only for the account's
lock) followed by ``release_slot``. Also: how soon a waiter on another connection is woken by
a release's NOTIFY (Postgres).

    python benchmarks/bench_ledger.py               # about 30 s
    python benchmarks/bench_ledger.py --n 100       # fewer grants per client
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from wanrecipe.executor.quota import Quota
    kind, where, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    quota = Quota(concurrency=10_000, submit_rps=10_000)
    if kind == "postgres":
        from wanrecipe.executor.ledger.postgres import PostgresLedger
        ledger = PostgresLedger(where, quota, "bench", listen=False)
    else:
        from wanrecipe.executor.ledger import StateDirLedger
        ledger = StateDirLedger(Path(where), quota, "bench")
    print("ready", flush=True)
    sys.stdin.readline()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        answer = ledger.try_slot()
        times.append(time.perf_counter() - t0)
        assert answer.granted
        ledger.release_slot(answer.lease)
    ledger.close()
    print(json.dumps(times), flush=True)
    """
)


def grant_latencies(kind: str, where: str, clients: int, n: int) -> list[float]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, kind, where, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(clients)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    times: list[float] = []
    for p in procs:
        times += json.loads(p.communicate(timeout=600)[0])
        assert p.returncode == 0
    return times


def wake_latencies(url: str, n: int) -> list[float]:
    from wanrecipe.executor.ledger.postgres import PostgresLedger
    from wanrecipe.executor.quota import Quota

    holder = PostgresLedger(url, Quota(concurrency=1), "wake", listen=False)
    waiter = PostgresLedger(url, Quota(concurrency=1), "wake")
    woken = threading.Event()
    waiter.watch(woken.set)
    time.sleep(0.5)  # the listener is connected
    out = []
    for _ in range(n):
        lease = holder.try_slot().lease
        assert lease is not None
        woken.clear()
        t0 = time.perf_counter()
        holder.release_slot(lease)
        assert woken.wait(10)
        out.append(time.perf_counter() - t0)
    holder.close()
    waiter.close()
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests import services

    reason = services.postgres_missing()
    if reason:
        raise SystemExit(f"bench_ledger: {reason} (or pass --pg-url)")
    with services.postgres_cluster() as cluster:
        yield cluster.create_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="grants per client (default 300)")
    parser.add_argument("--pg-url", help="an existing empty Postgres database to use")
    args = parser.parse_args()
    rows = []
    with postgres(args.pg_url) as url, tempfile.TemporaryDirectory() as tmp:
        for kind, where in (("state-dir", tmp), ("postgres", url)):
            for clients in (1, 4):
                t = grant_latencies(kind, where, clients, args.n)
                rows.append((f"{kind} grant, {clients} client(s)", len(t), pct(t, 50), pct(t, 99)))
        w = wake_latencies(url, max(20, args.n // 5))
        rows.append(("postgres NOTIFY wake (other conn)", len(w), pct(w, 50), pct(w, 99)))
    print(f"{'measure':40} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, count, p50, p99 in rows:
        print(f"{name:40} {count:6d} {p50 * 1000:8.2f} {p99 * 1000:8.2f}")


if __name__ == "__main__":
    main()
