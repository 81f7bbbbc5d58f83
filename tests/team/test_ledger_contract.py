"""The QuotaLedger contract, one module for every implementation: in-process, state
directory (SQLite) and Postgres.

Time is a fake clock here, so waits can be checked exactly (the Postgres ledger then reads
it in place of the database's clock, once per transaction as it reads that one). The real
clock, real processes and NOTIFY are in test_ledger_postgres.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wanrecipe.executor.ledger import (
    MIN_WAIT_S,
    Answer,
    InProcessLedger,
    StateDirLedger,
    account_id,
)
from wanrecipe.executor.quota import Quota

KINDS = ["in-process", "state-dir", "postgres"]
LEASED = ["state-dir", "postgres"]


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


Make = Callable[..., Any]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Make]:
    """A factory of ledgers of one kind, all on one store and one clock."""
    yield from _factory(request, tmp_path, clock)


@pytest.fixture(params=LEASED)
def shared(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Make]:
    """The same, for the ledgers shared by processes (leases, accounts, one store)."""
    yield from _factory(request, tmp_path, clock)


def _factory(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Make]:
    kind = request.param
    made: list[Any] = []
    url = request.getfixturevalue("pg_url") if kind == "postgres" else ""

    def factory(quota: Quota, account: str = "acct", lease_s: float = 5.0) -> Any:
        ledger: Any
        if kind == "in-process":
            ledger = InProcessLedger(quota, clock=clock)
        elif kind == "state-dir":
            ledger = StateDirLedger(tmp_path, quota, account, clock=clock, lease_s=lease_s)
        else:
            from wanrecipe.executor.ledger.postgres import PostgresLedger

            ledger = PostgresLedger(url, quota, account, clock=clock, lease_s=lease_s)
        made.append(ledger)
        return ledger

    yield factory
    for ledger in made:
        ledger.close()


def refused(answer: Answer) -> bool:
    return not answer.granted and answer.lease is None and answer.wait_s >= MIN_WAIT_S


def test_slots_are_granted_explicitly(make: Make) -> None:
    ledger = make(Quota(concurrency=2))
    a, b, c = ledger.try_slot(), ledger.try_slot(), ledger.try_slot()
    assert a.granted and b.granted and a.lease and b.lease and a.lease != b.lease
    assert refused(c)
    ledger.release_slot(a.lease)
    d = ledger.try_slot()
    assert d.granted and d.lease not in (a.lease, b.lease)
    assert refused(ledger.try_slot())


def test_a_wait_of_zero_or_less_is_still_a_refusal() -> None:
    """Classic bug 1: a computed wait <= 0 taken as "granted" although no grant was
    recorded (two callers then both "hold" the last slot)."""
    for wait in (0.0, -0.3, 1e-12):
        assert refused(Answer.refuse(wait))


def test_a_window_that_frees_exactly_now_grants_for_real(make: Make, clock: Clock) -> None:
    """Where a wait would compute to exactly 0 the ledger grants (and records it), so the
    next caller is refused: the grant is an answer, never a wait read as one."""
    ledger = make(Quota(submit_rps=1, margin=0.0))
    first = ledger.try_submit()
    ledger.submit_done(first.lease)
    clock.t += 1.0
    second = ledger.try_submit()
    assert second.granted and second.lease
    assert refused(ledger.try_submit())  # the grant was recorded: the window is full again


def test_fractional_waits_stay_fractional(make: Make, clock: Clock) -> None:
    """Classic bug 2: a wait of 0.3 s rounded to 0 (a busy loop) or up to 1 s (idle)."""
    ledger = make(Quota(submit_rps=2, margin=0.0))
    first, second = ledger.try_submit(), ledger.try_submit()
    assert first.granted and second.granted
    ledger.submit_done(first.lease)
    clock.t += 0.7
    ledger.submit_done(second.lease)
    answer = ledger.try_submit()
    assert refused(answer)
    assert answer.wait_s == pytest.approx(0.3, abs=1e-6)
    clock.t += 0.25
    assert ledger.try_submit().wait_s == pytest.approx(0.05, abs=1e-6)
    clock.t += 0.05
    assert ledger.try_submit().granted


def test_a_submit_in_flight_holds_its_place_in_the_window(make: Make, clock: Clock) -> None:
    """Until its answer is back a submit counts as arriving now, however long it takes."""
    ledger = make(Quota(submit_rps=1, margin=0.0))
    first = ledger.try_submit()
    clock.t += 3.0
    assert refused(ledger.try_submit())
    ledger.submit_done(first.lease)
    clock.t += 0.999
    assert refused(ledger.try_submit())
    clock.t += 0.001
    assert ledger.try_submit().granted


def test_the_margin_widens_the_window(make: Make, clock: Clock) -> None:
    ledger = make(Quota(submit_rps=1, margin=0.25))
    ledger.submit_done(ledger.try_submit().lease)
    clock.t += 1.0
    assert ledger.try_submit().wait_s == pytest.approx(0.25, abs=1e-6)


def test_a_rate_below_one_per_second(make: Make, clock: Clock) -> None:
    ledger = make(Quota(submit_rps=0.5, margin=0.0))
    ledger.submit_done(ledger.try_submit().lease)
    assert ledger.try_submit().wait_s == pytest.approx(2.0, abs=1e-6)


def test_two_ledgers_on_one_store_share_the_quota(shared: Make) -> None:
    one, two = shared(Quota(concurrency=2)), shared(Quota(concurrency=2))
    assert one.try_slot().granted
    lease = two.try_slot()
    assert lease.granted
    assert refused(one.try_slot()) and refused(two.try_slot())
    two.release_slot(lease.lease)
    assert one.try_slot().granted


def test_accounts_do_not_share(shared: Make) -> None:
    one = shared(Quota(concurrency=1), account=account_id("http://a", "k1"))
    two = shared(Quota(concurrency=1), account=account_id("http://a", "k2"))
    assert one.try_slot().granted and two.try_slot().granted
    assert refused(one.try_slot()) and refused(two.try_slot())
    assert "k1" not in account_id("http://a", "k1")


def test_a_silent_owners_slots_return_after_the_lease(shared: Make, clock: Clock) -> None:
    """An owner that stops renewing (a worker dead on another machine): its slots are free
    when its lease runs out, not before; a renewed lease does not run out."""
    dead, alive = (
        shared(Quota(concurrency=2), lease_s=5.0),
        shared(Quota(concurrency=2), lease_s=5.0),
    )
    assert dead.try_slot().granted and dead.try_slot().granted
    assert refused(alive.try_slot())
    clock.t += 4.9
    answer = alive.try_slot()
    assert refused(answer)
    assert answer.wait_s <= 0.1 + 1e-6  # never sleeps past the moment the lease runs out
    clock.t += 0.1
    assert alive.try_slot().granted and alive.try_slot().granted
    assert refused(dead.try_slot())
    clock.t += 4.0
    alive.renew()
    clock.t += 4.0
    assert refused(dead.try_slot())  # renewed: still alive's


def test_a_silent_owners_submit_blocks_until_lease_and_window(shared: Make, clock: Clock) -> None:
    dead = shared(Quota(submit_rps=1, margin=0.0), lease_s=5.0)
    alive = shared(Quota(submit_rps=1, margin=0.0), lease_s=5.0)
    assert dead.try_submit().granted  # and never answered
    clock.t += 5.5
    answer = alive.try_submit()
    assert refused(answer) and answer.wait_s <= 0.5 + 1e-6  # never past the window's end
    clock.t += 0.5
    assert alive.try_submit().granted


def test_close_gives_everything_back(shared: Make) -> None:
    leaver, stayer = shared(Quota(concurrency=2)), shared(Quota(concurrency=2))
    assert leaver.try_slot().granted and leaver.try_slot().granted
    assert refused(stayer.try_slot())
    leaver.close()
    assert stayer.try_slot().granted and stayer.try_slot().granted


def test_a_release_is_seen_by_watchers(make: Make) -> None:
    ledger = make(Quota(concurrency=1))
    seen: list[str] = []
    ledger.watch(lambda: seen.append("freed"))
    lease = ledger.try_slot().lease
    ledger.release_slot(lease)
    assert seen  # (the Postgres ledger's NOTIFY to *other* ledgers: test_ledger_postgres)
