"""QuotaLedger: explicit answers, leases, and one quota for two processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.executor.ledger import (
    MIN_WAIT_S,
    Answer,
    InProcessLedger,
    LedgerGate,
    StateDirLedger,
    account_id,
)
from wanrecipe.executor.quota import Quota


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ledgers(tmp_path: Path, quota: Quota, clock: Clock):
    yield InProcessLedger(quota, clock=clock)
    yield StateDirLedger(tmp_path, quota, "acct", clock=clock, lease_s=5.0)


@pytest.mark.parametrize("kind", ["in-process", "state-dir"])
def test_slots_are_granted_explicitly(tmp_path, kind):
    clock = Clock()
    ledger = list(ledgers(tmp_path, Quota(concurrency=2), clock))[kind == "state-dir"]
    a, b, c = ledger.try_slot(), ledger.try_slot(), ledger.try_slot()
    assert a.granted and b.granted and not c.granted
    assert c.lease is None and c.wait_s >= MIN_WAIT_S
    ledger.release_slot(a.lease)
    assert ledger.try_slot().granted
    ledger.close()


def test_a_refusal_is_never_a_grant():
    """The classic bug: a computed wait <= 0 taken as "granted" without recording a grant."""
    for wait in (0.0, -0.3, 1e-12):
        answer = Answer.refuse(wait)
        assert not answer.granted and answer.lease is None
        assert answer.wait_s >= MIN_WAIT_S


@pytest.mark.parametrize("kind", ["in-process", "state-dir"])
def test_fractional_waits_stay_fractional(tmp_path, kind):
    """The other classic bug: a wait of 0.3 s rounded to 0 (a busy loop) or to 1 s (idle)."""
    clock = Clock()
    quota = Quota(submit_rps=2, margin=0.0)
    ledger = list(ledgers(tmp_path, quota, clock))[kind == "state-dir"]
    first, second = ledger.try_submit(), ledger.try_submit()
    assert first.granted and second.granted
    ledger.submit_done(first.lease)
    clock.t += 0.7
    ledger.submit_done(second.lease)
    refused = ledger.try_submit()
    assert not refused.granted
    assert refused.wait_s == pytest.approx(0.3, abs=1e-6)
    clock.t += 0.3
    assert ledger.try_submit().granted
    ledger.close()


def test_a_silent_owners_slots_free_after_its_lease(tmp_path):
    """An owner that stops renewing (another host's dead process): free after the lease."""
    clock = Clock()
    dead = StateDirLedger(tmp_path, Quota(concurrency=2), "acct", clock=clock, lease_s=5.0)
    alive = StateDirLedger(tmp_path, Quota(concurrency=2), "acct", clock=clock, lease_s=5.0)
    assert dead.try_slot().granted and dead.try_slot().granted
    assert not alive.try_slot().granted
    clock.t += 3.0
    alive_slot = None
    assert not alive.try_slot().granted  # still leased
    clock.t += 2.0
    alive_slot = alive.try_slot()
    assert alive_slot.granted
    # A renewed lease does not run out.
    clock.t += 4.0
    alive.renew()
    clock.t += 4.0
    assert alive.try_slot().granted  # the dead one's second slot
    assert not alive.try_slot().granted  # alive's first slot is still held
    alive.close()


def test_accounts_do_not_share(tmp_path):
    one = StateDirLedger(tmp_path, Quota(concurrency=1), account_id("http://a", "k1"))
    two = StateDirLedger(tmp_path, Quota(concurrency=1), account_id("http://a", "k2"))
    assert one.try_slot().granted and two.try_slot().granted
    assert "k1" not in account_id("http://a", "k1")
    one.close()
    two.close()


async def test_gate_paces_submits_without_spinning(tmp_path):
    """Through the gate, 6 submits at 2/s: never more than 2 in a window, few refusals."""
    quota = Quota(submit_rps=2, concurrency=6)
    gate = LedgerGate(quota, StateDirLedger(tmp_path, quota, "acct"))
    grants: list[float] = []

    async def submit() -> None:
        async with gate.submission():
            grants.append(time.monotonic())

    await asyncio.gather(*(submit() for _ in range(6)))
    await gate.aclose()
    grants.sort()
    assert all(b - a >= 1.0 for a, b in zip(grants, grants[2:], strict=False))
    assert gate.refusals < 30  # a wait rounded to zero would ask thousands of times


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from wanrecipe.executor.ledger import StateDirLedger
    from wanrecipe.executor.quota import Quota
    ledger = StateDirLedger(Path(sys.argv[1]), Quota(concurrency=2), "acct", lease_s=2.0)
    assert ledger.try_slot().granted and ledger.try_slot().granted
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_a_killed_process_does_not_block_others(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    # On the same host the dead owner's pid shows it is gone: its slots are free at once
    # (on another host they would be free when its lease, 2 s here, runs out).
    ledger = StateDirLedger(tmp_path, Quota(concurrency=2), "acct")
    assert ledger.try_slot().granted and ledger.try_slot().granted
    assert not ledger.try_slot().granted
    ledger.close()


@pytest.mark.slow
def test_two_processes_share_one_quota(batch_dir, tmp_path):
    """Two `wanrecipe run` processes, one state directory: together never more than the
    account's 2 running tasks or 2 submits per second (the emulator itself would allow more)."""
    recipe = batch_dir(rows=6)
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    (tmp_path / "a.csv").write_text("\n".join(lines[:4]) + "\n")
    (tmp_path / "b.csv").write_text("\n".join([lines[0], *lines[4:]]) + "\n")
    env = {**os.environ, "WANRECIPE_STATE_DIR": str(tmp_path / "state")}
    config = EmulatorConfig(concurrency=0, rps=0, latency=0.6, engine_time_budget=0.2)
    with EmulatorThread(config) as emu:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wanrecipe",
                    "run",
                    str(recipe),
                    "--batch",
                    rows,
                    "--out",
                    f"out-{rows}",
                    "--base-url",
                    emu.base_url,
                    "--json",
                ],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for rows in ("a.csv", "b.csv")
        ]
        outputs = [p.communicate(timeout=300) for p in procs]
        stats = emu.stats()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert stats["submissions"]["accepted"] == 12
    assert stats["tasks"]["peak_running"] <= 2
    assert stats["submissions"]["peak_accepted_1s"] <= 2
    # Both processes were working at the same time (the test would prove nothing otherwise).
    spans = []
    for rows in ("a.csv", "b.csv"):
        top = json.loads((tmp_path / f"out-{rows}" / "run.json").read_text())
        assert top["status"] == "ok"
        spans.append((top["started"], top["finished"]))
    assert spans[0][0] <= spans[1][1] and spans[1][0] <= spans[0][1]
