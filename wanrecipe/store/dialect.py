"""The seam between the journal's policy and a database: transactions that run named queries.

The policy (``policy.py``, ``liveness.py``) says *what* to read and write and decides; a
dialect (``journal.py`` for SQLite, ``pg_journal.py`` for Postgres) knows how to connect, how
to make a transaction durable, and the SQL. The SQL of each dialect is one file,
``sql/<dialect>.sql``, of ``-- name: NAME`` blocks loaded once: both files hold every query
of ``POLICY_QUERIES`` under the same name, so the two can be read side by side
(``tests/store/test_journal_contract.py`` checks it), plus what only their own database needs
(schema, migrations, clock, locks).

Why files of named queries rather than strings in Python: the queries are the part a reviewer
of a schema change or a DBA reads, and a file per dialect shows each database's whole dialogue
in one place, with no Python in between.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from functools import cache
from importlib import resources
from typing import Any, Protocol

Row = Mapping[str, Any]

#: The queries the policy runs, by name: each dialect's SQL file defines every one of them.
POLICY_QUERIES = frozenset(
    {
        "claim_key", "retire", "to_submitted", "to_done", "to_failed", "to_abandoned",
        "add_result", "take_over", "get", "live_of_key", "done_of_key", "in_flight",
        "unfinished", "attempts", "of_keys", "results_of", "count_by_state", "keys_cached",
        "gc_attempts", "clear_attempts", "referenced_blobs", "heartbeat", "sign_off",
        "owner_seen", "claim_seed", "seed_of", "known_tasks",
    }
)  # fmt: skip

_NAME = re.compile(r"^--\s*name:\s*([a-z_0-9]+)\s*$", re.MULTILINE)


@cache
def queries(dialect: str) -> dict[str, str]:
    """The named queries of ``sql/<dialect>.sql`` (loaded once per process)."""
    text = resources.files(__package__).joinpath("sql", f"{dialect}.sql").read_text("utf-8")
    names = list(_NAME.finditer(text))
    out: dict[str, str] = {}
    for here, after in zip(names, [*names[1:], None], strict=True):
        body = text[here.end() : after.start() if after is not None else len(text)]
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        out[here.group(1)] = "\n".join(lines).strip().rstrip(";").strip()
    return out


def statements(script: str) -> Iterator[str]:
    """The statements of a DDL block (no semicolons inside string literals there)."""
    for statement in script.split(";"):
        if statement.strip():
            yield statement.strip()


class Tx(Protocol):
    """One transaction. Lists passed as parameters become the dialect's array form."""

    def one(self, name: str, **params: Any) -> Row | None:
        """The first row of the named query, or None."""
        ...

    def all(self, name: str, **params: Any) -> list[Row]: ...

    def run(self, name: str, **params: Any) -> int:
        """Run a write; returns how many rows it touched."""
        ...

    def claim(self, name: str, **params: Any) -> Row | None:
        """Run a write that a unique index may refuse: its ``RETURNING`` row, or None when the
        index said no (the transaction goes on: the refusal undoes this statement only)."""
        ...

    def now(self) -> float:
        """The time, epoch seconds: the database's clock (Postgres), read once per
        transaction, or the journal's clock (SQLite, or a test's)."""
        ...

    def lock_key(self, key: str) -> None:
        """Serialise this transaction with every other one that locks ``key`` (Postgres:
        ``pg_advisory_xact_lock``; SQLite: a write transaction already holds the database's
        one write lock)."""
        ...


class Dialect(Protocol):
    """A connection to one journal database."""

    name: str
    #: Where the journal lives, fit for messages (a path, or a URL without its password).
    location: str
    #: Reads need no round trip and never wait for a writer (a local file in WAL mode).
    local: bool

    def write(self, *, durable: bool = True, quick: bool = False) -> AbstractContextManager[Tx]:
        """A write transaction; ``durable=False`` may commit without waiting for the disk
        (see ``journal.py``, "Why each fsync"). ``quick=True``: never wait (for another
        writer, or for a round trip: a dialect that is not ``local`` always refuses); raise
        ``WouldWait``, nothing written, instead."""
        ...

    def read(self) -> AbstractContextManager[Tx]:
        """A read-only transaction: one consistent snapshot."""
        ...

    def close(self) -> None: ...
