"""Running a batch: every row's steps in one scheduler, one quota, one state dir, one cache.

``<run dir>/<row key>/`` is each row's ordinary run directory (its images and ``run.json``);
``<run dir>/run.json`` is the batch record. A row's record is written the moment its last step
ends, so a batch killed halfway still has the records of its finished rows; the content keys
in the journal make a re-run submit only what is unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..executor.budget_shared import SharedRowBudget
from ..report.batch_record import BatchRecord, BatchStatus, RowRecord, RowStatus
from ..report.events import Event, EventSink, discard
from ..report.record import RunRecord, StepRecord
from ..runner import (
    BackendChoice,
    collect_outputs,
    default_state_dir,
    host_of,
    open_session,
    save_durations,
    step_records,
)
from .claims import RowClaims, budget_key, open_claims, run_claimed
from .graph import BatchGraph, LoadedRow, node_id

_TERMINAL = frozenset({"done", "cached", "failed", "skipped"})


async def execute_batch(
    graph: BatchGraph,
    *,
    backend: BackendChoice,
    run_dir: Path,
    options: Any = None,
    on_event: EventSink = discard,
    handle_signals: bool = False,
    state_dir: str | os.PathLike[str] | None = None,
    max_usd: Decimal | None = None,
    shared_quota: bool | None = None,
    blobs: str | None = None,
    claims: RowClaims | None = None,
    budget_id: str | None = None,
) -> BatchRecord:
    """Run every row of ``graph``; return the batch record (also written to run.json).

    ``shared_quota``: share the account's quota with other processes through the state
    directory (default: for every backend but the embedded emulator, which is this process's
    alone). ``claims``: which rows are this process's (default: from the state; all of
    them but for a ``postgresql://`` state, see batch/claims.py). ``max_usd`` is checked
    against the budget's tally, shared through the state with every process on the same
    budget: ``budget_id`` (else ``WANRECIPE_BUDGET_ID``, else the batch's, see
    ``budget_key``).
    """
    claims = claims if claims is not None else open_claims(state_dir)
    from ..executor.scheduler import RunOptions

    options = options or RunOptions()
    if max_usd is None and options.max_usd is not None:
        max_usd = options.max_usd
    async with _batch_session(
        graph, backend, state_dir, options, shared_quota=shared_quota, blobs=blobs,
        max_usd=max_usd, budget_id=budget_id,
    ) as (session, budget):  # fmt: skip
        if not claims.shared:
            return await _run_rows(
                graph, session, budget, backend=backend, run_dir=run_dir, options=options,
                on_event=on_event, handle_signals=handle_signals,
            )  # fmt: skip

        # Team mode: rows claimed from the rows table a few at a time, each chunk an
        # ordinary batch run of its rows in this one session (its connections, quota gate,
        # client and budget stay open from chunk to chunk).
        def chunk(sub: BatchGraph, _cap: Decimal | None, sink: EventSink) -> Any:
            return _run_rows(
                sub, session, budget, backend=backend, run_dir=run_dir, options=options,
                on_event=sink, handle_signals=handle_signals,
            )  # fmt: skip

        return await run_claimed(
            graph, claims, chunk, on_event, run_dir=run_dir, backend=backend.label,
            max_usd=max_usd,
        )  # fmt: skip


@contextlib.asynccontextmanager
async def _batch_session(
    graph: BatchGraph,
    backend: BackendChoice,
    state_dir: str | os.PathLike[str] | None,
    options: Any,
    *,
    shared_quota: bool | None,
    blobs: str | None,
    max_usd: Decimal | None,
    budget_id: str | None,
) -> AsyncIterator[tuple[Any, SharedRowBudget | None]]:
    """The run's session (state, backend, quota gate, client) and the batch's budget, whose
    tally spans every row of ``graph`` (every chunk of a team-mode batch)."""
    async with open_session(
        backend,
        state_dir,
        options,
        default_dir=default_state_dir(graph.path),
        shared_quota=backend.kind != "local" if shared_quota is None else shared_quota,
        blobs=blobs,
    ) as session:
        budget = None
        if max_usd is not None:
            budget = await _open_budget(graph, session, backend, max_usd, budget_id)
        try:
            yield session, budget
        finally:
            if budget is not None:
                # Holds come back; what was billed or is still in flight stays in the tally.
                await asyncio.shield(asyncio.to_thread(budget.close))


async def _run_rows(
    graph: BatchGraph,
    session: Any,
    budget: SharedRowBudget | None,
    *,
    backend: BackendChoice,
    run_dir: Path,
    options: Any,
    on_event: EventSink,
    handle_signals: bool,
) -> BatchRecord:
    """Run these rows in one scheduler within an open session; the batch record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    first = graph.rows[0].recipe
    combined = RunRecord(
        recipe=str(first.path),
        name=first.name,
        params={},
        backend=backend.label,
        base_url="",
        run_dir=str(run_dir),
        started=started,
        steps=_combined_steps(graph),
    )
    batch = BatchRecord(str(first.path), first.name, backend.label, str(run_dir), started)
    tracker = _RowTracker(graph, combined, batch, run_dir, on_event, budget)
    base_url = session.base_url
    combined.base_url = base_url if backend.kind != "dashscope" else host_of(base_url)
    on_event(
        Event(
            "run_started",
            0.0,
            data={
                "kind": "batch",
                "backend": backend.label,
                "base_url": combined.base_url,
                "run_dir": str(run_dir),
                "rows": len(graph.rows),
                "steps": len(combined.steps),
                "planned_images": graph.planned_images,
            },
        )
    )
    scheduler = session.scheduler(
        graph, record=combined, run_dir=run_dir, backend=backend.label, options=options,
        render=graph.render, on_event=tracker, budget=budget,
    )  # fmt: skip
    tracker.scheduler = scheduler
    try:
        await session.run(scheduler, handle_signals=handle_signals)
    except BaseException as exc:
        cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        _finish(batch, tracker, scheduler.elapsed(), "interrupted" if cancelled
                else "failed")  # fmt: skip
        raise
    elapsed = scheduler.elapsed()
    save_durations(session.state.path, backend.label, scheduler.durations)
    status: BatchStatus
    if scheduler.budget_reached:
        status = "budget"
    elif scheduler.stopping is not None and not options.fail_fast:
        status = "interrupted"
    elif any(r.status == "failed" for r in tracker.all_rows()):
        status = "failed"
    else:
        status = "ok"
    _finish(batch, tracker, elapsed, status)
    on_event(
        Event(
            "run_finished",
            elapsed,
            data=batch.finished_data(),
        )
    )
    return batch


async def _open_budget(
    graph: BatchGraph, session: Any, backend: BackendChoice, max_usd: Decimal, given: str | None
) -> SharedRowBudget:
    """The batch's budget: a row hold per row (a row starts only when all of it fits),
    granted by the tally every process on the budget shares (its state's database or state
    directory)."""
    from ..executor.budget_ledger import open_budget_ledger
    from ..executor.ledger import ledger_home
    from ..store.liveness import heartbeat_ttl

    ttl = heartbeat_ttl()
    key = budget_key(graph, backend, given)
    ledger = await asyncio.to_thread(open_budget_ledger, ledger_home(session.state), key, ttl_s=ttl)
    planned = {r.key: sum(r.images.values()) for r in graph.rows}
    return SharedRowBudget(
        max_usd, planned, lambda nid: graph.nodes[nid].row, ledger, renew_s=ttl / 6
    )


def _combined_steps(graph: BatchGraph) -> dict[str, StepRecord]:
    """Every row's step records (as a single run of it would have them, ``if:``-skipped steps
    included), keyed by node id."""
    steps: dict[str, StepRecord] = {}
    for loaded in graph.rows:
        for sid, rec in step_records(loaded.recipe).items():
            nid = node_id(loaded.key, sid)
            steps[nid] = replace(rec, id=nid)
    return steps


def _finish(batch: BatchRecord, tracker: _RowTracker, elapsed: float, status: BatchStatus) -> None:
    batch.rows = tracker.all_rows(final=True)
    batch.warnings = list(tracker.combined.warnings)
    batch.left_images = tracker.left_images()
    batch.elapsed_s = round(elapsed, 3)
    batch.finished = datetime.now(UTC).isoformat(timespec="seconds")
    batch.status = status
    batch.write(Path(batch.run_dir) / "run.json")


class _RowTracker:
    """The scheduler's event sink: passes events on with their row key, notices when a row's
    last step ends, writes that row's record and says so (a ``row`` event)."""

    def __init__(
        self,
        graph: BatchGraph,
        combined: RunRecord,
        batch: BatchRecord,
        run_dir: Path,
        sink: EventSink,
        budget: SharedRowBudget | None = None,
    ) -> None:
        self.graph, self.combined, self.batch = graph, combined, batch
        self.run_dir, self.sink, self.budget = run_dir, sink, budget
        self.scheduler: Any = None
        self._ended: dict[str, set[str]] = {r.key: set() for r in graph.rows}
        self._rows: dict[str, RowRecord] = {}
        # Each row's node ids, so closing a row looks at its own steps only (not at every
        # step of the batch: that made a batch O(rows x steps)), and running counts.
        self._nodes_of: dict[str, list[str]] = {r.key: [] for r in graph.rows}
        for nid in combined.steps:
            row_key = nid.partition("/")[0]
            if row_key in self._nodes_of:
                self._nodes_of[row_key].append(nid)
        self._count: dict[str, int] = {"ok": 0, "failed": 0}

    def __call__(self, event: Event) -> None:
        if event.kind != "step" or event.step is None or event.step not in self.graph.nodes:
            self.sink(event)
            return
        node = self.graph.nodes[event.step]
        self.sink(replace(event, step=node.step, data={**event.data, "row": node.row}))
        if event.state in _TERMINAL:
            ended = self._ended[node.row]
            ended.add(node.step)
            if len(ended) == len(self.graph.by_key[node.row].recipe.steps):
                row = self._close(self.graph.by_key[node.row], final=True, t=event.t)
                if self.budget is not None:
                    self.budget.release_row(row.key)
                self.sink(
                    Event(
                        "row",
                        event.t,
                        state=row.status,
                        message=row.error or "",
                        data={
                            "row": row.key,
                            "index": row.index,
                            "images": row.images_billed,
                            "cost_usd": str(row.cost_usd),
                            "outputs": row.outputs,
                            "rows_done": self._count["ok"],
                            "rows_failed": self._count["failed"],
                            "rows_left": len(self.graph.rows) - len(self._rows),
                        },
                    )
                )

    def all_rows(self, *, final: bool = False) -> list[RowRecord]:
        rows = []
        for loaded in self.graph.rows:
            row = self._rows.get(loaded.key)
            rows.append(row if row is not None else self._close(loaded, final=final))
        return rows

    def left_images(self) -> int:
        """Images the steps not done would still bill."""
        return sum(
            self.graph.images(nid)
            for nid, rec in self.combined.steps.items()
            if nid in self.graph.nodes and rec.state not in ("done", "cached")
        )

    def _close(self, loaded: LoadedRow, *, final: bool, t: float | None = None) -> RowRecord:
        """The row's record from the combined one; written to ``<key>/run.json``."""
        recipe, key = loaded.recipe, loaded.key
        prefix = f"{key}/"
        combined = self.combined.steps
        steps = {
            nid[len(prefix) :]: replace(combined[nid], id=nid[len(prefix) :])
            for nid in self._nodes_of[key]
        }
        record = RunRecord(
            recipe=str(recipe.path),
            name=recipe.name,
            params=dict(recipe.params),
            backend=self.combined.backend,
            base_url=self.combined.base_url,
            run_dir=str(self.run_dir / key),
            started=self.combined.started,
            steps=steps,
            warnings=[w for w in self.combined.warnings if w.startswith(f"{key}/")],
        )
        from ..recipe.render import render_outputs

        outputs = collect_outputs(recipe, record, Path(""), render_outputs)
        record.outputs = outputs
        status = self._status(steps, frozenset(getattr(recipe, "skipped", {})))
        record.status = {"ok": "ok", "failed": "failed"}.get(status, self._stopped_status())  # type: ignore[assignment]
        record.finished = datetime.now(UTC).isoformat(timespec="seconds")
        times = [s.finished_at for s in steps.values() if s.finished_at is not None]
        if t is not None:
            times.append(t)
        record.elapsed_s = round(max(times), 3) if times else 0.0
        if final:
            (self.run_dir / key).mkdir(parents=True, exist_ok=True)
            record.write(self.run_dir / key / "run.json")
        row = RowRecord(
            key=key,
            index=loaded.row.index,
            params={k: _jsonable(v) for k, v in loaded.row.params.items()},
            status=status,
            dir=key,
            outputs={name: [f"{key}/{p}" for p in paths] for name, paths in outputs.items()},
            images_billed=record.images_billed,
            error=_row_error(steps) if status != "ok" else None,
            record=record,
        )
        if final:
            previous = self._rows.get(key)
            if previous is not None and previous.status in self._count:
                self._count[previous.status] -= 1
            self._rows[key] = row
            if row.status in self._count:
                self._count[row.status] += 1
        return row

    def _stopped_status(self) -> str:
        scheduler = self.scheduler
        return "budget" if scheduler is not None and scheduler.budget_reached else "interrupted"

    @staticmethod
    def _status(steps: Mapping[str, StepRecord], by_design: frozenset[str]) -> RowStatus:
        """``by_design``: steps an ``if:`` leaves out (skipped as documented, not a failure)."""
        states = [s.state for sid, s in steps.items() if sid not in by_design]
        if all(s in ("done", "cached") for s in states):
            return "ok"
        if any(
            s.state == "failed" and not (s.error and s.error.code == "Interrupted")
            for s in steps.values()
        ):
            return "failed"
        if all(s == "skipped" for s in states):
            return "skipped"
        return "interrupted"


def _row_error(steps: Mapping[str, StepRecord]) -> str | None:
    for step in steps.values():
        if step.state == "failed" and step.error is not None:
            return f"{step.id}: {step.error.code}: {step.error.message}"
    for step in steps.values():
        if step.state == "skipped" and step.skipped_because:
            return f"{step.id}: skipped: {step.skipped_because}"
    return None


def _jsonable(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
