"""The BudgetLedger contract, one module for both implementations: the state directory
(SQLite, the processes of one machine) and Postgres (every machine on the database).

Time is a fake clock (the Postgres ledger reads it in place of the database's clock), so a
heartbeat TTL running out is exact; the threads at the end use the real clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from wanrecipe import wire
from wanrecipe.executor.budget_ledger import (
    Spend,
    StateDirBudgetLedger,
    Tally,
    open_budget_ledger,
    to_pyformat,
)

PRICE = wire.PRICE_PER_IMAGE_USD
TTL = 30.0


def usd(images: int) -> Decimal:
    """A cap with room for exactly ``images`` images."""
    return PRICE * images + Decimal("0.0001")


class Clock:
    def __init__(self, t: float = 5000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


Make = Callable[..., Any]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["state-dir", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Make]:
    """Ledgers (each one process's, its own connection) on one store and one clock."""
    kind = request.param
    url = request.getfixturevalue("pg_url") if kind == "postgres" else ""
    made: list[Any] = []

    def factory(budget: str = "b1", *, real_clock: bool = False) -> Any:
        ledger: Any
        if kind == "state-dir":
            if real_clock:
                ledger = StateDirBudgetLedger(tmp_path, budget, ttl_s=TTL)
            else:
                ledger = StateDirBudgetLedger(tmp_path, budget, ttl_s=TTL, clock=clock)
        else:
            from wanrecipe.executor.budget_pg import PostgresBudgetLedger

            ledger = PostgresBudgetLedger(
                url, budget, ttl_s=TTL, clock=None if real_clock else clock
            )
        made.append(ledger)
        return ledger

    yield factory
    for ledger in made:
        ledger.close(Spend())


def test_a_reservation_fits_the_tally_of_every_owner(make: Make) -> None:
    a, b = make(), make()
    assert a.admit(Spend(), 3, usd(5)) is True
    # B alone would fit, but A's hold counts: 3 + 3 > 5.
    assert b.admit(Spend(), 3, usd(5)) is False
    assert b.admit(Spend(), 2, usd(5)) is True
    assert a.tally() == Tally(committed=5, billed=0)
    # Billed, in flight and held all count; moving images between them changes nothing.
    a.write(Spend(billed=1, in_flight=1, held=1))
    assert b.tally() == Tally(committed=5, billed=1)
    assert a.admit(Spend(billed=1, in_flight=1, held=1), 1, usd(5)) is False


def test_a_refusal_still_records_the_owners_figures(make: Make) -> None:
    a, b = make(), make()
    assert a.admit(Spend(billed=4), 2, usd(5)) is False
    assert b.tally() == Tally(committed=4, billed=4)


def test_each_process_admits_against_its_own_cap(make: Make) -> None:
    a, b = make(), make()
    assert a.admit(Spend(), 4, usd(4)) is True
    assert b.admit(Spend(), 1, usd(4)) is False
    # A process given a larger cap spends what the larger cap leaves: the tally is one.
    assert b.admit(Spend(), 1, usd(5)) is True
    assert b.admit(Spend(held=1), 1, usd(5)) is False


def test_a_silent_owner_gives_back_its_holds_but_not_what_it_may_have_billed(
    make: Make, clock: Clock
) -> None:
    dead, live = make(), make()
    dead.write(Spend(billed=1, in_flight=1, held=3))
    assert live.admit(Spend(), 1, usd(5)) is False  # 5 committed: nothing left
    clock.t += TTL - 1
    assert live.admit(Spend(), 1, usd(5)) is False  # not silent for the TTL yet
    clock.t += 2
    # After the TTL its 3 held come back; its billed and in-flight images stay counted.
    assert live.admit(Spend(), 3, usd(5)) is True
    assert live.tally() == Tally(committed=5, billed=2)


def test_a_renewed_owner_keeps_its_holds(make: Make, clock: Clock) -> None:
    owner, other = make(), make()
    owner.write(Spend(held=4))
    clock.t += TTL - 5
    owner.renew()
    clock.t += 10  # TTL + 5 after the write, 10 after the renewal
    assert other.admit(Spend(), 2, usd(5)) is False
    assert other.tally().committed == 4


def test_closing_folds_billed_into_the_tally_and_frees_holds(make: Make) -> None:
    first = make()
    assert first.admit(Spend(), 4, usd(6)) is True
    first.close(Spend(billed=2, in_flight=1, held=0))
    later = make()
    # The tally outlives the process: 2 billed + 1 that may still bill.
    assert later.tally() == Tally(committed=3, billed=3)
    assert later.admit(Spend(), 3, usd(6)) is True
    assert later.admit(Spend(held=3), 1, usd(6)) is False


def test_budgets_are_independent(make: Make) -> None:
    a, b = make("batch-a"), make("batch-b")
    assert a.admit(Spend(), 5, usd(5)) is True
    assert b.admit(Spend(), 5, usd(5)) is True
    assert a.tally().committed == 5 and b.tally().committed == 5


def test_concurrent_owners_never_admit_past_the_cap(make: Make) -> None:
    """Four owners, each on its own connection and thread, race for 1 image at a time: the
    check and the grant are one transaction, so exactly the cap is granted."""
    ledgers = [make(real_clock=True) for _ in range(4)]
    granted = [0] * len(ledgers)
    start = threading.Barrier(len(ledgers))

    def spend(i: int) -> None:
        start.wait()
        for _ in range(12):
            if ledgers[i].admit(Spend(held=granted[i]), 1, usd(15)):
                granted[i] += 1

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(len(ledgers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(granted) == 15
    assert ledgers[0].tally().committed == 15


def test_open_budget_ledger_picks_the_store(tmp_path: Path, pg_url: str) -> None:
    local = open_budget_ledger(tmp_path, "b", ttl_s=TTL)
    remote = open_budget_ledger(pg_url, "b", ttl_s=TTL)
    try:
        assert type(local).__name__ == "StateDirBudgetLedger"
        assert (tmp_path / "budgets.sqlite").is_file()
        assert type(remote).__name__ == "PostgresBudgetLedger"
        # Two stores, two tallies.
        assert local.admit(Spend(), 2, usd(2)) and remote.admit(Spend(), 2, usd(2))
    finally:
        local.close(Spend())
        remote.close(Spend())


def test_named_queries_become_psycopg_parameters() -> None:
    got = to_pyformat("a = :budget AND b::float8 < :now")
    assert got == "a = %(budget)s AND b::float8 < %(now)s"
