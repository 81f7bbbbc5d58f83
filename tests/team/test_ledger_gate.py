"""The asyncio gate over a ledger: what happens around cancellation and release."""

from __future__ import annotations

import asyncio
import threading

from wanrecipe.executor.ledger import Answer, InProcessLedger, LedgerGate
from wanrecipe.executor.quota import Quota


class SlowToAnswer(InProcessLedger):
    """A real in-process ledger whose slot answers wait for the test to let them through
    (a database answering while the asker is being cancelled)."""

    quick = False  # it waits: the gate must ask it from a thread

    def __init__(self, quota: Quota) -> None:
        super().__init__(quota)
        self.asked = threading.Event()
        self.answer = threading.Event()

    def try_slot(self) -> Answer:
        self.asked.set()
        self.answer.wait(30)
        return super().try_slot()


async def test_a_grant_that_lands_after_cancellation_is_handed_back() -> None:
    quota = Quota(concurrency=1)
    ledger = SlowToAnswer(quota)
    gate = LedgerGate(quota, ledger)
    entered = []

    async def take() -> None:
        async with gate.slot():
            entered.append(True)

    waiter = asyncio.create_task(take())
    assert await asyncio.to_thread(ledger.asked.wait, 30)
    waiter.cancel()  # while the ledger is still answering
    ledger.answer.set()
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled() and not entered
    # The grant that arrived for nobody went back: the one slot is free.
    for _ in range(200):
        answer = InProcessLedger.try_slot(ledger)
        if answer.granted:
            break
        await asyncio.sleep(0.05)
    assert answer.granted
    await gate.aclose()


async def test_a_release_wakes_a_waiter_in_the_same_process() -> None:
    quota = Quota(concurrency=1)
    ledger = InProcessLedger(quota)
    gates = [LedgerGate(quota, ledger), LedgerGate(quota, ledger)]  # two schedulers, one quota
    order: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with gates[0].slot():
            order.append("first")
            await release.wait()

    async def wait() -> None:
        async with gates[1].slot():
            order.append("second")

    first = asyncio.create_task(hold())
    while not order:
        await asyncio.sleep(0.01)
    second = asyncio.create_task(wait())
    while gates[1].refusals == 0:
        await asyncio.sleep(0.01)
    assert order == ["first"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["first", "second"]
    for gate in gates:
        await gate.aclose()
