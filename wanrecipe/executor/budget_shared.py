"""SharedRowBudget: a batch's budget kept by every process that spends from it.

The accounting is :class:`~.budget.RowBudget`'s (a row starts only when all of it fits, its
later steps draw from that hold); what changes is the check. A reservation is granted only
by the budget's tally (:mod:`.budget_ledger`), in one transaction that reads what every
process on the budget has billed, has in flight and holds, and writes this process's new
hold. So N workers with ``--max-cost X`` together stay within X, and a worker killed with
holds gives them back after the heartbeat TTL.

Every call to the tally runs on one thread of its own, in order: the event loop never waits
for the database (``areserve`` awaits it; ``settle``, ``release_row`` and ``add_billed`` only
queue the new figures), and this process's row is always written from its latest figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

from .budget import RowBudget, images_cost
from .budget_ledger import BudgetLedger, Spend, Tally

T = TypeVar("T")


class SharedRowBudget(RowBudget):
    """A :class:`RowBudget` whose reservations the shared tally grants. Close it (``close``)
    when the run ends: its holds come back, what it billed stays in the tally."""

    def __init__(
        self,
        max_usd: Decimal,
        planned: Mapping[str, int],
        row_of: Any,
        ledger: BudgetLedger,
        *,
        renew_s: float,
    ) -> None:
        super().__init__(max_usd, planned, row_of)
        self.ledger = ledger
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="budget-tally")
        self._stop = threading.Event()
        self._beat = threading.Thread(
            target=self._renew_every, args=(renew_s,), name="budget-heartbeat", daemon=True
        )
        self._beat.start()
        #: The tally when a reservation was last refused (for the message).
        self.last_tally: Tally | None = None
        self._closed = False

    # -- on the tally's thread -------------------------------------------------------------

    def _spend(self) -> Spend:
        return Spend(self.billed, self.in_flight, max(0, self.reserved - self.in_flight))

    def _admit(self, images: int) -> bool:
        try:
            granted = self.ledger.admit(self._spend(), images, self.max_usd)
        except Exception as exc:  # the database is unreachable: never a grant it did not record
            self.refused = self.refused or (
                f"the budget's tally cannot be reached ({type(exc).__name__}): submitting "
                "nothing more"
            )
            return False
        if not granted:
            with contextlib.suppress(Exception):
                self.last_tally = self.ledger.tally()
        return granted

    def _push(self) -> None:
        with contextlib.suppress(Exception):  # the next write, or the TTL, catches up
            self.ledger.write(self._spend())

    def _call(self, fn: Callable[[], T]) -> Future[T]:
        return self._thread.submit(fn)

    def _renew_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            with contextlib.suppress(RuntimeError):  # shut down meanwhile
                self._call(lambda: _quietly(self.ledger.renew))

    # -- the Budget interface (from the event loop) ----------------------------------------

    def reserve(self, images: int, what: str = "") -> bool:
        return self._call(lambda: self._reserve_now(images, what)).result()

    async def areserve(self, images: int, what: str = "") -> bool:
        return await asyncio.wrap_future(self._call(lambda: self._reserve_now(images, what)))

    def _reserve_now(self, images: int, what: str) -> bool:
        before = self.refused
        granted = RowBudget.reserve(self, images, what)
        if granted:
            self._push()  # what it drew from its hold is in flight now
        elif before is None and self.refused is not None and self.last_tally is not None:
            # The tally's figure, not this process's: "..., row b would add up to $X".
            _, _, adds = self.refused.partition(", ")
            self.refused = (
                f"budget ${self.max_usd} reached: ${images_cost(self.last_tally.committed)} "
                f"billed, in flight or held across every process on it, {adds}"
            )
        return granted

    def settle(self, reserved: int, billed: int) -> None:
        self._later(lambda: RowBudget.settle(self, reserved, billed))

    def add_billed(self, billed: int) -> None:
        self._later(lambda: RowBudget.add_billed(self, billed))

    def release_row(self, row: str) -> None:
        self._later(lambda: RowBudget.release_row(self, row))

    def _later(self, change: Callable[[], None]) -> None:
        def apply() -> None:
            change()
            self._push()

        if self._closed:
            change()
            return
        self._call(apply)

    def tally(self) -> Tally:
        """The budget across every process on it (a database round trip)."""
        return self._call(self.ledger.tally).result()

    def close(self) -> None:
        """Leave the budget: holds come back; billed and in flight stay in the tally."""
        if self._closed:
            return
        self._stop.set()
        self._beat.join(timeout=5.0)
        done = self._call(lambda: self.ledger.close(Spend(self.billed, self.in_flight, 0)))
        self._closed = True
        with contextlib.suppress(Exception):
            done.result(timeout=30.0)
        self._thread.shutdown(wait=True)


def _quietly(fn: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        fn()
