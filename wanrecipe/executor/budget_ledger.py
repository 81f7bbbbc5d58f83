"""The budget's tally, shared: what every process spending from one budget has billed, has in
flight and holds, checked and granted in one transaction.

A budget is named by its id (``--budget-id``, else the batch's: see docs/team.md). Each
process spending from it is an *owner* with one row: ``billed`` (images its tasks billed),
``in_flight`` (images of tasks it submitted that have not ended: they may bill) and ``held``
(images reserved for work it has not submitted yet: a batch row's later steps). An owner's
row is written from its own accounting (:class:`~.budget_shared.SharedRowBudget`); the check
that a new reservation fits reads every owner's row in the same transaction that grants it.

The tally of a budget is ``settled`` (what owners that are gone billed or had in flight) plus
every live owner's ``billed + in_flight + held``. An owner that stops heartbeating for
``ttl_s`` is gone: its ``held`` comes back to the others, its ``billed + in_flight`` is folded
into ``settled`` (a task it submitted may still bill; a survivor that re-attaches to it counts
it again, so the tally errs on the safe side). An owner that closes cleanly folds its row the
same way at once. The tally outlives the processes: a budget is spent across every run that
uses its id, and each process admits only what keeps the tally within *its* ``max_usd``.

Two implementations behind :class:`BudgetLedger`, one set of rules: :class:`StateDirBudgetLedger`
(``budgets.sqlite`` in the state directory: the processes of one machine) and
:class:`~.budget_pg.PostgresBudgetLedger` (every machine on the database). They differ only
in connecting, the clock and the SQL dialect (the named queries below).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from .budget import images_cost
from .ledger.base import new_owner

BUDGET_FILE = "budgets.sqlite"

#: Named queries, written with ``:name`` parameters (the Postgres ledger rewrites them).
SQL: dict[str, str] = {
    "ensure": (
        "INSERT INTO budget_tally (budget, settled) VALUES (:budget, 0) ON CONFLICT DO NOTHING"
    ),
    "lock_tally": "SELECT settled FROM budget_tally WHERE budget = :budget",
    "gone": (
        "SELECT owner, billed + in_flight FROM budget_holds"
        " WHERE budget = :budget AND owner <> :owner AND seen < :now - :ttl"
    ),
    "drop_owner": "DELETE FROM budget_holds WHERE budget = :budget AND owner = :owner",
    "settle": "UPDATE budget_tally SET settled = settled + :images WHERE budget = :budget",
    "others": (
        "SELECT COALESCE(SUM(billed + in_flight + held), 0) FROM budget_holds"
        " WHERE budget = :budget AND owner <> :owner"
    ),
    "mine": "SELECT billed + in_flight FROM budget_holds WHERE budget = :budget AND owner = :owner",
    "write": (
        "INSERT INTO budget_holds (budget, owner, billed, in_flight, held, seen)"
        " VALUES (:budget, :owner, :billed, :in_flight, :held, :now)"
        " ON CONFLICT (budget, owner) DO UPDATE SET billed = excluded.billed,"
        " in_flight = excluded.in_flight, held = excluded.held, seen = excluded.seen"
    ),
    "renew": "UPDATE budget_holds SET seen = :now WHERE budget = :budget AND owner = :owner",
    "tally": (
        "SELECT t.settled + COALESCE((SELECT SUM(billed + in_flight + held) FROM budget_holds h"
        " WHERE h.budget = t.budget), 0),"
        " t.settled + COALESCE((SELECT SUM(billed) FROM budget_holds h"
        " WHERE h.budget = t.budget), 0)"
        " FROM budget_tally t WHERE t.budget = :budget"
    ),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_tally (
    budget TEXT PRIMARY KEY,
    settled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS budget_holds (
    budget TEXT NOT NULL,
    owner TEXT NOT NULL,
    billed INTEGER NOT NULL DEFAULT 0,
    in_flight INTEGER NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (budget, owner)
)
"""


@dataclass(frozen=True)
class Spend:
    """One owner's images: billed, in flight (submitted, not ended) and held (not submitted)."""

    billed: int = 0
    in_flight: int = 0
    held: int = 0

    @property
    def total(self) -> int:
        return self.billed + self.in_flight + self.held


@dataclass(frozen=True)
class Tally:
    """A budget across every owner: images committed (billed, in flight or held) and billed
    (``billed`` counts what gone owners had in flight: it may have billed)."""

    committed: int
    billed: int


class BudgetLedger(Protocol):
    """One budget's tally, shared by processes. Every method is one short transaction,
    thread-safe, called off the event loop."""

    budget_id: str
    owner: str

    def admit(self, mine: Spend, extra: int, max_usd: Decimal) -> bool:
        """Write ``mine`` with ``extra`` more held if the whole tally then stays within
        ``max_usd`` (True); else write ``mine`` as it is (False)."""
        ...

    def write(self, mine: Spend) -> None: ...
    def renew(self) -> None: ...
    def tally(self) -> Tally: ...
    def close(self, mine: Spend) -> None: ...


Run = Callable[[str, Mapping[str, Any]], Any]


class TallyRules:
    """The rules, once, over a dialect's transaction (``_txn`` yields ``(run, now)``: run a
    named query, and the clock read once for the transaction)."""

    budget_id: str
    owner: str
    ttl_s: float

    @contextlib.contextmanager
    def _txn(self) -> Iterator[tuple[Run, float]]:
        raise NotImplementedError
        yield  # pragma: no cover

    def _lock(self, run: Run, now: float) -> None:
        """Take the budget (its tally row, for update) and fold owners that are gone."""
        where = {"budget": self.budget_id, "owner": self.owner}
        run("ensure", where)
        run("lock_tally", where)
        gone = run("gone", {**where, "now": now, "ttl": self.ttl_s}).fetchall()
        for owner, images in gone:
            run("drop_owner", {"budget": self.budget_id, "owner": owner})
            run("settle", {"budget": self.budget_id, "images": int(images)})

    def _write(self, run: Run, now: float, mine: Spend) -> None:
        where = {"budget": self.budget_id, "owner": self.owner, "now": now}
        run("write", {**where, "billed": mine.billed, "in_flight": mine.in_flight,
                      "held": mine.held})  # fmt: skip

    def admit(self, mine: Spend, extra: int, max_usd: Decimal) -> bool:
        with self._txn() as (run, now):
            self._lock(run, now)
            where = {"budget": self.budget_id, "owner": self.owner}
            settled = int(run("lock_tally", where).fetchone()[0])
            others = int(run("others", where).fetchone()[0])
            fits = images_cost(settled + others + mine.total + extra) <= max_usd
            if fits:
                mine = Spend(mine.billed, mine.in_flight, mine.held + extra)
            self._write(run, now, mine)
            return fits

    def write(self, mine: Spend) -> None:
        with self._txn() as (run, now):
            self._write(run, now, mine)

    def renew(self) -> None:
        with self._txn() as (run, now):
            run("renew", {"budget": self.budget_id, "owner": self.owner, "now": now})

    def tally(self) -> Tally:
        with self._txn() as (run, now):
            self._lock(run, now)
            row = run("tally", {"budget": self.budget_id}).fetchone()
            return Tally(int(row[0]), int(row[1])) if row else Tally(0, 0)

    def _fold(self, mine: Spend) -> None:
        """Leave the budget: what this owner billed or has in flight stays in the tally,
        what it held comes back."""
        with self._txn() as (run, now):
            self._lock(run, now)
            where = {"budget": self.budget_id, "owner": self.owner}
            run("drop_owner", where)
            run("settle", {"budget": self.budget_id, "images": mine.billed + mine.in_flight})


class StateDirBudgetLedger(TallyRules):
    """The tally in ``budgets.sqlite`` in a state directory: every process of this machine
    that uses the state directory. Each transaction is ``BEGIN IMMEDIATE``; the clock is the
    machine's (``clock`` replaces it in tests)."""

    def __init__(
        self,
        state_path: Path,
        budget_id: str,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.budget_id, self.ttl_s, self._clock = budget_id, ttl_s, clock
        self.owner = owner or new_owner()
        self._lock_t = threading.Lock()
        Path(state_path).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            Path(state_path) / BUDGET_FILE, timeout=30.0, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        with self._lock_t:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # money: the tally survives a crash
            self._db.executescript(SCHEMA.replace("DOUBLE PRECISION", "REAL") + ";")

    @contextlib.contextmanager
    def _txn(self) -> Iterator[tuple[Run, float]]:
        with self._lock_t:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                db = self._db
                yield (lambda name, params: db.execute(SQL[name], dict(params))), self._clock()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self, mine: Spend) -> None:
        try:
            with contextlib.suppress(sqlite3.Error):
                self._fold(mine)
        finally:
            with self._lock_t:
                self._db.close()


def to_pyformat(query: str) -> str:
    """``:name`` -> ``%(name)s`` (psycopg's named parameters)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", query)


def open_budget_ledger(home: Path | str, budget_id: str, *, ttl_s: float) -> BudgetLedger:
    """The tally of ``budget_id`` where the state keeps shared things (``ledger_home``): a
    ``postgresql://`` URL (every machine) or a state directory (this machine)."""
    if isinstance(home, str) and home.startswith(("postgresql://", "postgres://")):
        from .budget_pg import PostgresBudgetLedger

        return PostgresBudgetLedger(home, budget_id, ttl_s=ttl_s)
    return StateDirBudgetLedger(Path(home), budget_id, ttl_s=ttl_s)
