"""Batch rows as a table: which process runs which row.

By default every row is this process's (:class:`AllRows`) and the batch runs as one graph.
With a Postgres state (team mode) the rows of a batch are rows of ``batch_rows``, keyed by the
batch's id (a hash of the recipe's text and the rows' keys and values, so every machine
running the same batch finds the same rows) and the row key. Each process claims a few rows
at a time with ``SELECT ... FOR UPDATE SKIP LOCKED`` (two claimers never wait for each other
nor take the same row), runs them as an ordinary batch, and marks them done; it heartbeats
the rows it holds. A row whose owner stopped heartbeating for ``ttl_s`` is claimable again,
so N processes split one batch with no scheduler of their own and a dead one's rows are
taken over: a process with nothing left to claim stays while others hold rows, and takes
those whose owner falls silent. A row done is never claimed again: a re-run finishes only
the rest. A failed row is tried again by the next process that starts on the batch (as a
re-run would), never by the live processes that saw it fail.

The never-pay-twice protocol is the journal's, not this table's: a row taken over from a
worker that died mid-task re-attaches to (or finds) the task that worker submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from ..report.batch_record import BatchRecord, BatchStatus, RowRecord
from ..report.events import Event, EventSink
from .graph import BatchGraph

#: Seconds without a heartbeat after which a claimed row is free again.
ROW_TTL_S = 30.0
#: How often a process with nothing left to claim looks again (at most; a quarter of the
#: TTL when that is shorter): the batch is over for it as soon as the last row is done.
IDLE_LOOK_S = 1.0
#: Rows a process claims at a time (a multiple of the account's concurrency keeps its slots
#: busy through one chunk; small enough that N processes share the rows evenly).
DEFAULT_AHEAD = 4


class RowClaims(Protocol):
    """Which rows of a batch are this process's to run."""

    #: False for :class:`AllRows`: the batch runs as one graph, nothing is claimed.
    shared: bool

    def register(self, batch: str, rows: Sequence[str]) -> None: ...
    def claim(self, limit: int) -> list[str]: ...
    def heartbeat(self) -> None: ...
    def finish(self, key: str, status: str) -> None: ...
    def held_elsewhere(self) -> int: ...
    def wait_change(self, timeout: float) -> None: ...
    def others(self) -> dict[str, str]: ...
    def close(self) -> None: ...


class AllRows:
    """Every row is mine (one process, the default)."""

    shared = False

    def __init__(self) -> None:
        self._todo: list[str] = []
        self._done: dict[str, str] = {}

    def register(self, batch: str, rows: Sequence[str]) -> None:
        self._todo = list(rows)

    def claim(self, limit: int) -> list[str]:
        mine, self._todo = self._todo[:limit], self._todo[limit:]
        return mine

    def heartbeat(self) -> None:
        pass

    def finish(self, key: str, status: str) -> None:
        self._done[key] = status

    def held_elsewhere(self) -> int:
        return 0

    def wait_change(self, timeout: float) -> None:
        pass  # nothing is held elsewhere: never waited on

    def others(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def open_claims(state: str | os.PathLike[str] | None) -> RowClaims:
    """The claims of a state (``--state``, else ``WANRECIPE_STATE``, as ``parse_state``
    reads them): the rows table for a ``postgresql://`` state, else all rows. A silent
    claimer's rows are free after the workers' heartbeat TTL (``WANRECIPE_HEARTBEAT_TTL``, 30 s
    by default), as its journal entries are."""
    from ..store import parse_state

    spec = parse_state(state, default_dir=Path("."))
    if spec.kind == "postgres" and spec.url is not None:
        from ..store.liveness import heartbeat_ttl
        from .claims_pg import PostgresClaims

        return PostgresClaims(spec.url, ttl_s=heartbeat_ttl())
    return AllRows()


def batch_id(graph: BatchGraph) -> str:
    """The batch's identity: the recipe's text and every row's key and values (the same
    batch on any machine, whatever its path; another rows file is another batch)."""
    digest = hashlib.sha256()
    with contextlib.suppress(OSError):
        digest.update(graph.path.read_bytes())
    rows = [[r.key, {k: str(v) for k, v in sorted(r.row.params.items())}] for r in graph.rows]
    digest.update(json.dumps(rows, sort_keys=True).encode())
    return digest.hexdigest()[:32]


#: Names a budget's tally explicitly (``--budget-id``); else it is the batch's.
BUDGET_ID_ENV = "WANRECIPE_BUDGET_ID"


def budget_key(graph: BatchGraph, backend: Any, given: str | None = None) -> str:
    """Which budget a batch spends from: ``given`` (``--budget-id``, else
    ``WANRECIPE_BUDGET_ID``), else the batch's id on the backend's account (a hash of the
    service and the API key, never the key): every worker of one batch on one account
    shares it, in every run of that batch."""
    from ..executor.ledger import account_id

    given = given if given is not None else os.environ.get(BUDGET_ID_ENV)
    if given:
        return f"id:{given}"
    account = account_id(str(getattr(backend, "label", "")), str(getattr(backend, "api_key", "")))
    return hashlib.sha256(f"{batch_id(graph)}\n{account}".encode()).hexdigest()[:32]


#: ``run(sub_graph, max_usd, on_event)``: run these rows as an ordinary batch.
RunRows = Callable[[BatchGraph, Decimal | None, EventSink], Awaitable[BatchRecord]]


async def run_claimed(
    graph: BatchGraph,
    claims: RowClaims,
    run: RunRows,
    on_event: EventSink,
    *,
    run_dir: Path,
    backend: str,
    max_usd: Decimal | None = None,
    ahead: int = DEFAULT_AHEAD,
) -> BatchRecord:
    """Claim ``ahead`` rows, run them, mark them, until no row is left to claim; return one
    record for every row of the batch (written to ``run_dir/run.json``): those this process
    ran, and the others' listed as skipped, naming whose they were. ``max_usd`` is the cap
    of the batch's shared budget (its tally spans the chunks, and every process on it)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    keys = [r.key for r in graph.rows]
    await asyncio.to_thread(claims.register, batch_id(graph), keys)
    beat = asyncio.create_task(_beat(claims), name="row-claims-heartbeat")
    sink = _Chunks(on_event, len(keys))
    records: list[BatchRecord] = []
    try:
        while True:
            mine = await asyncio.to_thread(claims.claim, ahead)
            if not mine:
                # Nothing free, but rows others hold may still come free (their owner dies):
                # stay until every row is done, looking again a few times per TTL.
                if await asyncio.to_thread(claims.held_elsewhere) == 0:
                    break
                # Woken at once when a row ends or comes free (its owner stopped).
                ttl = float(getattr(claims, "ttl_s", ROW_TTL_S))
                await asyncio.to_thread(claims.wait_change, min(ttl / 4, IDLE_LOOK_S))
                continue
            sub = BatchGraph(graph.path, [graph.by_key[k] for k in mine])
            sink.records = records
            try:
                # The budget is the batch's shared tally: every chunk spends from it.
                record = await run(sub, max_usd, sink)
            except BaseException:
                # Interrupted or crashed mid-chunk: its rows are free again at once.
                with contextlib.suppress(Exception):
                    for key in mine:
                        await asyncio.to_thread(claims.finish, key, "interrupted")
                raise
            stopped = record.status in ("interrupted", "budget")
            for row in record.rows:
                # A row a stop left undone (skipped because of it) is free again, not done.
                undone = stopped and row.status not in ("ok", "failed")
                await asyncio.to_thread(
                    claims.finish, row.key, "interrupted" if undone else row.status
                )
            records.append(record)
            if record.status in ("interrupted", "budget"):
                break
        others = await asyncio.to_thread(claims.others)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await asyncio.to_thread(claims.close)
    merged = merge(graph, records, others, run_dir=run_dir, backend=backend, started=started)
    merged.elapsed_s = round(loop.time() - t0, 3)
    run_dir.mkdir(parents=True, exist_ok=True)
    merged.write(run_dir / "run.json")
    sink.finished(merged)
    return merged


async def _beat(claims: RowClaims) -> None:
    every = float(getattr(claims, "ttl_s", ROW_TTL_S)) / 6
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(claims.heartbeat)


class _Chunks:
    """Passes a chunk's events on as one batch's: one ``run_started`` (all rows), row counts
    across chunks, and one ``run_finished`` at the very end."""

    def __init__(self, sink: EventSink, rows: int) -> None:
        self.sink = sink
        self.rows = rows
        self.started = False
        self.records: list[BatchRecord] = []

    def __call__(self, event: Event) -> None:
        if event.kind == "run_started":
            if self.started:
                return
            self.started = True
            event = replace(event, data={**event.data, "rows": self.rows, "claimed": True})
        elif event.kind == "run_finished":
            return
        elif event.kind == "row":
            before = [r for rec in self.records for r in rec.rows]
            data = dict(event.data)
            data["rows_done"] = int(data.get("rows_done", 0)) + sum(
                1 for r in before if r.status == "ok"
            )
            data["rows_failed"] = int(data.get("rows_failed", 0)) + sum(
                1 for r in before if r.status == "failed"
            )
            data["rows_left"] = self.rows - data["rows_done"] - data["rows_failed"]
            event = replace(event, data=data)
        self.sink(event)

    def finished(self, batch: BatchRecord) -> None:
        self.sink(
            Event(
                "run_finished",
                batch.elapsed_s or 0.0,
                data=batch.finished_data(),
            )
        )


def merge(
    graph: BatchGraph,
    records: Sequence[BatchRecord],
    others: dict[str, str],
    *,
    run_dir: Path,
    backend: str,
    started: str,
) -> BatchRecord:
    """One batch record from the chunks this process ran; rows it did not run are listed as
    skipped with whose they were."""
    ran = {r.key: r for rec in records for r in rec.rows}
    first = graph.rows[0].recipe
    merged = BatchRecord(str(first.path), first.name, backend, str(run_dir), started)
    for loaded in graph.rows:
        row = ran.get(loaded.key)
        if row is None:
            row = RowRecord(
                key=loaded.key,
                index=loaded.row.index,
                params={k: str(v) for k, v in loaded.row.params.items()},
                status="skipped",
                dir=loaded.key,
                error=f"another worker's row ({others.get(loaded.key, 'claimed')})",
            )
        merged.rows.append(row)
    merged.warnings = [w for rec in records for w in rec.warnings]
    # What is left of the whole batch, not only of this process's rows: rows no process
    # finished (done or failed), at what they would bill.
    left = [
        loaded
        for loaded in graph.rows
        if (
            ran[loaded.key].status in ("skipped", "interrupted")
            if loaded.key in ran
            else not others.get(loaded.key, "").startswith(("done", "failed"))
        )
    ]
    merged.left_images = sum(sum(r.images.values()) for r in left)
    merged.left_rows = len(left)
    merged.finished = datetime.now(UTC).isoformat(timespec="seconds")
    merged.status = _status([rec.status for rec in records])
    return merged


def _status(statuses: Sequence[BatchStatus]) -> BatchStatus:
    for worst in ("interrupted", "budget", "failed"):
        if worst in statuses:
            return worst
    return "ok"
