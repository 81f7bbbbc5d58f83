"""A slot handed from one task of a process to the next, without the ledger: how often, and
that another process still gets its turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

from wanrecipe.executor.ledger import Answer, InProcessLedger, LedgerGate, StateDirLedger
from wanrecipe.executor.quota import Quota


class Counting(InProcessLedger):
    """A real in-process ledger that counts what it is asked."""

    def __init__(self, quota: Quota) -> None:
        super().__init__(quota)
        self.grants = 0
        self.releases = 0

    def try_slot(self) -> Answer:
        answer = super().try_slot()
        self.grants += answer.granted
        return answer

    def release_slot(self, lease: str) -> None:
        self.releases += 1
        super().release_slot(lease)


async def test_a_queue_of_tasks_shares_one_grant_per_four_tasks() -> None:
    quota = Quota(concurrency=1)
    ledger = Counting(quota)
    gate = LedgerGate(quota, ledger)
    order: list[int] = []

    async def task(i: int) -> None:
        async with gate.slot():
            order.append(i)
            await asyncio.sleep(0)

    await asyncio.gather(*(task(i) for i in range(9)))
    await gate.aclose()
    assert order == list(range(9))  # FIFO as before
    # 9 tasks in a row: grants serve 4, 4 and 1 tasks.
    assert ledger.grants == 3 and gate.handed_over == 6
    assert ledger.releases == 3  # every grant went back


async def test_a_lone_task_gives_its_slot_back_at_once() -> None:
    quota = Quota(concurrency=1)
    ledger = Counting(quota)
    gate = LedgerGate(quota, ledger)
    async with gate.slot():
        pass
    assert ledger.releases == 1 and gate.handed_over == 0  # nobody waited: straight back
    await gate.aclose()


class CountingStateDir(StateDirLedger):
    grants = 0

    def try_slot(self) -> Answer:
        answer = super().try_slot()
        self.grants += answer.granted
        return answer


async def test_the_state_dir_ledger_sees_every_fourth_task(tmp_path: Path) -> None:
    """Between hand-overs the lease goes back to the file, where another process can take
    it; the file never shows more slots than the quota."""
    quota = Quota(concurrency=2)
    ledger = CountingStateDir(tmp_path, quota, "acct")
    gate = LedgerGate(quota, ledger)
    peak = running = 0

    async def task() -> None:
        nonlocal peak, running
        async with gate.slot():
            running += 1
            peak = max(peak, running)
            held = ledger._slots_held(ledger._db)[0]
            assert held <= 2
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(task() for _ in range(16)))
    assert ledger._slots_held(ledger._db)[0] == 0  # all given back
    await gate.aclose()
    assert peak == 2
    assert ledger.grants == 4  # 16 tasks over 2 slots, 4 tasks per grant
    assert gate.handed_over == 12
