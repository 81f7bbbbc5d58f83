"""PostgresBudgetLedger: a budget's tally for every machine that shares a Postgres database.

The rules are :class:`~.budget_ledger.TallyRules`'; here only the connection, the clock (the
database's ``clock_timestamp()``, never a machine's) and the dialect: the tally row is taken
``FOR UPDATE``, so two processes admitting against one budget are serialised and neither
can pass the check the other's grant would fail. psycopg (the ``team`` extra) is imported
only here, only for a ``postgresql://`` state.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .budget_ledger import SCHEMA, SQL, Run, Spend, TallyRules, to_pyformat
from .ledger.base import new_owner

_PG_SQL = {
    **{name: to_pyformat(query) for name, query in SQL.items()},
    "lock_tally": to_pyformat(SQL["lock_tally"] + " FOR UPDATE"),
}
_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"


def _schema_key() -> int:
    digest = hashlib.sha256(b"wanrecipe.budget_tally").digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresBudgetLedger(TallyRules):
    """The tally in tables ``budget_tally`` and ``budget_holds``. ``clock`` replaces the
    database's clock (tests only). A dropped connection is opened again by the next
    transaction; the one that saw it raises (the caller refuses, or leaves its row to the
    TTL)."""

    def __init__(
        self,
        url: str,
        budget_id: str,
        *,
        ttl_s: float,
        clock: Callable[[], float] | None = None,
        owner: str | None = None,
    ) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self.budget_id, self.ttl_s, self._clock = budget_id, ttl_s, clock
        self.owner = owner or new_owner()
        self._lock_t = threading.Lock()
        self._db: Any = psycopg.connect(url, autocommit=True)
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_schema_key(),))
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    @contextlib.contextmanager
    def _txn(self) -> Iterator[tuple[Run, float]]:
        with self._lock_t:
            if self._db.closed or self._db.broken:
                self._db = self._psycopg.connect(self._url, autocommit=True)
            with self._db.transaction():
                db = self._db

                def run(name: str, params: Mapping[str, Any]) -> Any:
                    return db.execute(_PG_SQL[name], dict(params))

                now = self._clock() if self._clock else float(db.execute(_NOW).fetchone()[0])
                yield run, now

    def close(self, mine: Spend) -> None:
        try:
            with contextlib.suppress(self._psycopg.Error):
                self._fold(mine)
        finally:
            with self._lock_t:
                self._db.close()
