"""The Postgres ledger on the database's own clock: NOTIFY wakes waiters on other
connections, many threads and processes together never get more than the quota, and a
killed worker's slots come back (at once on its own node, after the lease elsewhere)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from wanrecipe.executor.ledger import LedgerGate, open_gate
from wanrecipe.executor.quota import Quota

psycopg = pytest.importorskip("psycopg")

from wanrecipe.executor.ledger.postgres import PostgresLedger  # noqa: E402


def db_now(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        return float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])


def test_a_release_notifies_other_connections(pg_url: str) -> None:
    holder = PostgresLedger(pg_url, Quota(concurrency=1), "acct")
    waiter = PostgresLedger(pg_url, Quota(concurrency=1), "acct")
    other = PostgresLedger(pg_url, Quota(concurrency=1), "other-account")
    try:
        freed = threading.Event()
        waiter.watch(freed.set)
        lease = holder.try_slot().lease
        assert not waiter.try_slot().granted
        other.release_slot(other.try_slot().lease)  # another account's release: no business
        holder.release_slot(lease)
        assert freed.wait(30), "the release's NOTIFY never reached the other connection"
        assert waiter.try_slot().granted
    finally:
        for ledger in (holder, waiter, other):
            ledger.close()


def test_a_new_ledger_hears_a_release_made_right_after_it_opens(pg_url: str) -> None:
    """The listener is in place when the constructor returns: a release on another
    connection the moment after is not lost (its waiter would sleep its whole wait)."""
    quota = Quota(concurrency=2)
    holder = PostgresLedger(pg_url, quota, "acct", listen=False)
    try:
        for _ in range(5):
            lease = holder.try_slot().lease
            assert lease is not None
            heard = threading.Event()
            waiter = PostgresLedger(pg_url, quota, "acct")
            try:
                waiter.watch(heard.set)
                holder.release_slot(lease)
                assert heard.wait(10.0)
            finally:
                waiter.close()
    finally:
        holder.close()


async def test_a_waiting_gate_wakes_on_the_notification(pg_url: str) -> None:
    """A refused waiter sleeps until its computed wait (30 s here) or a release's
    notification, whichever is first: it is granted long before the 30 s."""
    quota = Quota(concurrency=1)
    gates = [
        LedgerGate(quota, PostgresLedger(pg_url, quota, "acct", lease_s=60, max_wait_s=30))
        for _ in range(2)
    ]
    first, second = gates
    try:
        order: list[str] = []
        release = asyncio.Event()

        async def hold() -> None:
            async with first.slot():
                order.append("first holds")
                await release.wait()
            order.append("first released")

        async def wait() -> None:
            async with second.slot():
                order.append("second holds")

        holder = asyncio.create_task(hold())
        while not order:
            await asyncio.sleep(0.01)
        waiter = asyncio.create_task(wait())
        while second.refusals == 0:
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), 25)
        assert order == ["first holds", "first released", "second holds"]
        assert second.woken >= 1 and second.refusals == 1
    finally:
        for gate in gates:
            await gate.aclose()


CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    import psycopg
    from wanrecipe.executor.ledger.postgres import PostgresLedger
    from wanrecipe.executor.quota import Quota

    url, threads, cycles, kind, where = sys.argv[1:6]
    threads, cycles = int(threads), int(cycles)
    quota = Quota(concurrency=2, submit_rps=5)
    if kind == "postgres":
        ledger = PostgresLedger(url, quota, "acct")
    else:
        from pathlib import Path
        from wanrecipe.executor.ledger import StateDirLedger
        ledger = StateDirLedger(Path(where), quota, "acct")
    peaks, refusals = [], [0]

    def until_granted(ask):
        while True:
            answer = ask()
            if answer.granted:
                return answer.lease
            refusals[0] += 1
            time.sleep(answer.wait_s)

    def work():
        probe = psycopg.connect(url, autocommit=True)
        for _ in range(cycles):
            slot = until_granted(ledger.try_slot)
            peaks.append(probe.execute(
                "UPDATE probe SET running = running + 1 RETURNING running").fetchone()[0])
            submit = until_granted(ledger.try_submit)
            probe.execute("INSERT INTO submits VALUES (clock_timestamp())")
            ledger.submit_done(submit)
            time.sleep(0.05)
            probe.execute("UPDATE probe SET running = running - 1")
            ledger.release_slot(slot)
        probe.close()

    print("ready", flush=True)
    sys.stdin.readline()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ledger.close()
    print(json.dumps({"peak": max(peaks), "refusals": refusals[0]}), flush=True)
    """
)


@pytest.mark.parametrize("kind", ["postgres", "state-dir"])
def test_many_threads_and_processes_never_exceed_the_quota(
    pg_url: str, kind: str, tmp_path: Path
) -> None:
    """3 processes x 3 threads, each cycle: a slot, then a submission. Counted outside the
    ledger (in a Postgres table whichever the ledger): tasks running at once (a counter every
    holder bumps) and submits per second (each stamped with the database's clock while its
    grant is held)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe (running int NOT NULL)")
        conn.execute("INSERT INTO probe VALUES (0)")
        conn.execute("CREATE TABLE submits (t timestamptz NOT NULL)")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, pg_url, "3", "3", kind, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:  # every process starts at once: contention, not turns
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=240)[0].strip()) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert max(r["peak"] for r in results) <= 2
    assert sum(r["refusals"] for r in results) > 0  # they did contend
    with psycopg.connect(pg_url, autocommit=True) as conn:
        times = [
            float(t)
            for (t,) in conn.execute(
                "SELECT extract(epoch FROM t) FROM submits ORDER BY t"
            ).fetchall()
        ]
        assert conn.execute("SELECT running FROM probe").fetchone()[0] == 0
        if kind == "postgres":
            held = "SELECT count(*) FROM quota_leases WHERE released IS NULL"
            assert conn.execute(held).fetchone()[0] == 0  # everything given back
    assert len(times) == 27
    # Any 6 submits span at least a second: never more than 5 in any one-second window.
    assert all(b - a >= 1.0 for a, b in zip(times, times[5:], strict=False))


HOLDER = textwrap.dedent(
    """
    import sys, time
    from wanrecipe.executor.ledger.postgres import PostgresLedger
    from wanrecipe.executor.quota import Quota
    import psycopg
    url, lease = sys.argv[1], float(sys.argv[2])
    with psycopg.connect(url, autocommit=True) as c:
        before = c.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0]
    ledger = PostgresLedger(url, Quota(concurrency=2), "acct", lease_s=lease, listen=False)
    assert ledger.try_slot().granted and ledger.try_slot().granted
    print(before, flush=True)
    time.sleep(120)
    """
)


def kill_a_holder(pg_url: str, lease_s: float) -> float:
    """A process that takes both slots and is killed; returns the database time just before
    its grants (its leases run out no sooner than that + ``lease_s``)."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_url, str(lease_s)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    before = float(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    return before


def test_a_killed_workers_slots_return_after_its_lease(pg_url: str) -> None:
    """Seen as from another machine (no pid to check): free when the lease runs out."""
    lease_s = 4.0
    before = kill_a_holder(pg_url, lease_s)
    ledger = PostgresLedger(pg_url, Quota(concurrency=2), "acct", reap_local=False)
    try:
        granted: list[Any] = []
        deadline = db_now(pg_url) + 60
        while len(granted) < 2 and db_now(pg_url) < deadline:
            answer = ledger.try_slot()
            if answer.granted:
                granted.append(answer.lease)
            else:
                assert answer.wait_s <= lease_s + 0.01
                threading.Event().wait(answer.wait_s)
        assert len(granted) == 2
        with psycopg.connect(pg_url, autocommit=True) as conn:
            at = [
                conn.execute("SELECT granted FROM quota_leases WHERE id = %s", (lease,)).fetchone()[
                    0
                ]
                for lease in granted
            ]  # fmt: skip
        assert min(at) >= before + lease_s  # not a moment before the lease ran out
        assert not ledger.try_slot().granted
    finally:
        ledger.close()


def test_a_killed_workers_slots_return_at_once_on_its_own_node(pg_url: str) -> None:
    before = kill_a_holder(pg_url, 60.0)
    ledger = PostgresLedger(pg_url, Quota(concurrency=2), "acct")
    try:
        assert ledger.try_slot().granted and ledger.try_slot().granted  # pid gone: freed
        assert db_now(pg_url) < before + 60.0
        assert not ledger.try_slot().granted
    finally:
        ledger.close()


async def test_open_gate_picks_the_postgres_ledger_for_a_url(pg_url: str) -> None:
    gate = open_gate(Quota(), shared_in=pg_url, base_url="http://127.0.0.1:1", api_key="sk-x")
    try:
        assert isinstance(gate, LedgerGate) and isinstance(gate.ledger, PostgresLedger)
        assert "sk-x" not in gate.ledger.account
        async with gate.slot(), gate.submission():
            pass
    finally:
        await gate.aclose()


def test_the_default_install_does_not_import_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys, asyncio\n"
        "from wanrecipe.executor.ledger import open_gate, close_gate\n"
        "from wanrecipe.executor.quota import Quota\n"
        "async def main():\n"
        f"    gate = open_gate(Quota(), shared_in={str(tmp_path)!r})\n"
        "    async with gate.slot(): pass\n"
        "    await close_gate(gate)\n"
        "asyncio.run(main())\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_state_directorys_quota_lives_in_it(tmp_path: Path) -> None:
    from wanrecipe.executor.ledger import ledger_home
    from wanrecipe.store import StateDir

    with StateDir.open(tmp_path / "state") as state:
        assert ledger_home(state) == tmp_path / "state"


def test_a_dropped_connection_refuses_then_reconnects(pg_url: str) -> None:
    """The database drops the ledger's connections (a restart, a failover): the request that
    sees it is refused (never granted unrecorded, never an exception into the run), the next
    one reconnects; releases left undone run out with their lease; NOTIFY comes back."""
    ledger = PostgresLedger(pg_url, Quota(concurrency=2), "acct")
    other = PostgresLedger(pg_url, Quota(concurrency=2), "acct")
    try:
        held = ledger.try_slot()
        assert held.granted
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        assert killed >= 4  # both ledgers' connections and both listeners
        answers = [ledger.try_slot() for _ in range(3)]
        assert not answers[0].granted and answers[0].lease is None
        assert [a.granted for a in answers[1:]] == [True, False]  # held + 1 = the quota
        ledger.release_slot(answers[1].lease)
        freed = threading.Event()
        other.watch(freed.set)
        deadline = db_now(pg_url) + 30
        while not freed.is_set() and db_now(pg_url) < deadline:  # the listener is back
            lease = ledger.try_slot().lease
            if lease is not None:
                ledger.release_slot(lease)
            freed.wait(0.5)
        assert freed.is_set()
    finally:
        ledger.close()
        other.close()


def test_a_postgres_states_quota_lives_in_its_database(tmp_path: Path, pg_url: str) -> None:
    from wanrecipe.executor.ledger import ledger_home
    from wanrecipe.store import open_state

    with open_state(pg_url, default_dir=tmp_path) as state:
        assert ledger_home(state) == pg_url
