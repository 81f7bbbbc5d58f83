"""What every part of the scheduler shares: run options, the step's request, the step-state
base class (its fields, events, journal calls) and small helpers.

The scheduler is one class built in layers, one module each: ``stepbase`` (state, events) ->
``downloads`` (results into the store and the run directory) -> ``submission`` (one attempt:
intent, submit, poll) -> ``recovery`` (resume, re-attach, another run's step, lost submits) ->
``scheduler`` (the DAG, steps, interrupt).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

from .. import wire
from ..errors import BackendError, StoreError
from ..offload import offload
from ..redact import redact_text
from ..report.events import Event, EventSink, discard
from ..report.record import ErrorInfo, RunRecord, StepRecord
from ..store import Attempt as JournalAttempt
from ..store import KeyBusy, StateDir, WouldWait
from ..store.records import worker_host
from .budget import Budget
from .identity import realm_of
from .inputs import DEFAULT_UPLOAD_THRESHOLD, PreparedInput, StepImage
from .lost import LIST_RETRY_DELAYS, LostTaskFinder
from .payloads import Payloads
from .polling import DurationModel, PollPolicy
from .quota import Quota, QuotaGate
from .retry import RetryPolicy
from .slots import PrioritySlots, priorities

T = TypeVar("T")

#: A write on the event loop (``StepBase._local_call``) that takes longer than this (its
#: fsync, on a slow disk) counts as slow; the ``ON_LOOP_SLOW_CALLS``-th slow one sends every
#: later one of the run to a worker thread.
ON_LOOP_MAX_S = 0.02
#: Not the first slow call: a call is timed on the wall clock, and one that waited for the GIL
#: (another thread importing modules, a profiler) looks as slow as an fsync on a slow disk. One
#: such call early in a run used to send all the rest of it to threads, for about 1 ms of CPU
#: a task more. A disk that is slow is slow on every call: it is told by the third.
ON_LOOP_SLOW_CALLS = 3

#: Result downloads are capped: 16384x16384 RGB PNG is the largest output there is.
DEFAULT_MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class RunOptions:
    fail_fast: bool = False
    quota: Quota = field(default_factory=Quota)
    poll: PollPolicy = field(default_factory=PollPolicy)
    #: Attempts for a task that ends FAILED with a transient code (recipe `retry:` overrides).
    task_attempts: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    upload_threshold: int = DEFAULT_UPLOAD_THRESHOLD
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    #: After an interrupt, how long running tasks may still finish (and be downloaded).
    interrupt_grace_s: float = 30.0
    #: Ignore stored results (still record new ones).
    no_cache: bool = False
    #: Steps to redo whatever the cache holds (the runner adds their dependants).
    force: frozenset[str] = frozenset()
    #: ``run --locked``: the seed of each step without one of its own, from the lock file.
    locked_seeds: Mapping[str, int] = field(default_factory=dict)
    #: Zone of the service's task timestamps, for finding a lost task in the task list
    #: (DashScope: Beijing time [UNC]; the emulator's default too).
    server_utc_offset_hours: float = 8.0
    #: The most this run may bill, USD (``--max-cost`` / ``budget: {max_usd}``); None: no cap.
    max_usd: Decimal | None = None
    #: A submit got no answer and the task list cannot tell whether it created a task:
    #: ``stop`` fails the step (a re-run looks again), ``resubmit`` submits again, warning
    #: that this may pay twice (``run --resubmit-lost``).
    lost_submit: Literal["stop", "resubmit"] = "stop"
    #: Result downloads retry (and re-query expired URLs) for the step's timeout, but at
    #: least this long.
    download_min_s: float = 30.0
    #: Waits before asking the task list again when it does not show a lost submit's task yet.
    lost_list_delays: tuple[float, ...] = LIST_RETRY_DELAYS


class LoopWrites:
    """Whether a run's local writes are still made on the event loop: until the
    ``slow_calls``-th one that took over ``max_s`` (a slow disk); then never again in that
    run (its later writes go to threads)."""

    def __init__(self, max_s: float = ON_LOOP_MAX_S, slow_calls: int = ON_LOOP_SLOW_CALLS):
        self.max_s = max_s
        self.slow_calls = slow_calls
        self.slow = 0
        self.allowed = True

    def took(self, seconds: float) -> None:
        if seconds > self.max_s:
            self.slow += 1
            if self.slow >= self.slow_calls:
                self.allowed = False


class StepFailed(Exception):
    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class Busy(Exception):
    """Another live run is working on this step's key (``attempts``): wait for it."""

    def __init__(self, attempts: tuple[JournalAttempt, ...]) -> None:
        super().__init__(f"busy: {len(attempts)} attempt(s) of another run")
        self.attempts = attempts


class Stopped(Exception):
    """The run is stopping; this step must not start anything new."""


@dataclass
class Request:
    """One step's request, ready to send, with what identifies it."""

    step: Any  # RenderedStep
    image: PreparedInput
    mask: PreparedInput | None
    parameters: dict[str, Any]
    key: str
    meta: dict[str, Any]  # stored with the journal's request summary
    forced: bool


class StepBase:
    def __init__(
        self,
        recipe: Any,
        client: Any,
        *,
        record: RunRecord,
        run_dir: Path,
        backend: str,
        options: RunOptions,
        render: Any,
        state: StateDir,
        on_event: EventSink = discard,
        durations: DurationModel | None = None,
        gate: QuotaGate | None = None,
        budget: Budget | None = None,
    ) -> None:
        # Each derived attribute beside what it derives from.
        self.recipe = recipe
        self._recipe_id = str(recipe.path)
        self._render = render
        self.backend = backend
        self._realm = realm_of(backend)  # emulator results never stand in for paid ones
        self.state = state
        self._journal = state.journal
        self._journal_path = state.journal.location
        # The journal's local writes (an intent, a download's blob and done mark) are made on
        # the loop until they prove slow (see ``LoopWrites``).
        self._loop_writes = LoopWrites()
        self._incoming = state.path / "incoming"
        self.client, self.record, self.run_dir, self.options = client, record, run_dir, options
        self._emit_sink = on_event
        self.gate = gate or QuotaGate(options.quota)
        if budget is None and options.max_usd is not None:
            budget = Budget(options.max_usd)
        #: Cost reserved before each submit, settled with what was billed (None: no budget).
        self.budget = budget
        self.durations = durations or DurationModel(options.poll)
        self._t0 = time.monotonic()
        self._started_wall = time.time()
        self._finished: dict[str, asyncio.Event] = {}
        self._outputs: dict[str, list[StepImage] | None] = {}
        self._stopping: str | None = None
        self._in_flight: set[str] = set()
        #: Content keys being worked on in this run -> set when that work ends.
        self._working: dict[str, asyncio.Event] = {}
        self._step_tasks: dict[str, asyncio.Task[None]] = {}
        self._wind_down_task: asyncio.Task[None] | None = None
        self._lost = LostTaskFinder(
            client, state.journal, utc_offset_hours=options.server_utc_offset_hours,
            warn=self._warn, retry_delays=options.lost_list_delays,
        )  # fmt: skip
        # One submit in flight at a time (intent -> submit -> task id journaled): a crash then
        # leaves at most one intent without its task id, and the task list names its task
        # without doubt (two lost submits at once could not be told apart). Costs nothing at
        # the service's 2 submits/s: a submit takes a round trip and two fsyncs.
        self._submitting = asyncio.Lock()
        #: When each attempt's submit answer arrived (monotonic), until its polling starts.
        self._answered: dict[int, float] = {}
        #: Tasks that may be ours (a lost submit sent again under ``lost_submit=resubmit``):
        #: their billed images are added to the record at the end of the run.
        self._possibly_billed: set[str] = set()
        self._mine: set[int] = set()
        #: Inputs: identified when a step is ready, built when its slot is granted, shared
        #: per digest; what each step still holds (see ``payloads``).
        self._payloads = Payloads(
            backend=backend, uploader=client, upload_threshold=options.upload_threshold
        )
        self._claimed: dict[str, list[PreparedInput]] = {}
        #: Billed images per step as last emitted, and their sum (see ``_emit_step``).
        self._billed: dict[str, int] = {}
        self._billed_total = 0
        # A batch graph orders its own (row by row); a recipe by its longest chains.
        order = recipe.priorities() if hasattr(recipe, "priorities") else priorities(recipe)
        self._slots = PrioritySlots(
            self.gate, order, [s.id for s in recipe.steps if not recipe.deps(s.id)]
        )

    def _working_on(self, attempt_id: int) -> None:
        """This run now works on ``attempt_id``: other runs on the state dir wait for it."""
        LIVE_ATTEMPTS.add((self._journal_path, attempt_id))
        self._mine.add(attempt_id)

    def _forget_mine(self) -> None:
        for attempt_id in self._mine:
            LIVE_ATTEMPTS.discard((self._journal_path, attempt_id))

    def _worked_on(self, attempt: JournalAttempt) -> bool:
        """Whether some live run is working on ``attempt`` right now: in this process, one
        that registered it; elsewhere, a live owner (pid check, else heartbeat)."""
        if is_mine(attempt):
            return (self._journal_path, attempt.id) in LIVE_ATTEMPTS
        return self._journal.owner_live(attempt)

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def _journal_call(
        self, fn: Any, *args: Any, quick_first: bool = False, **kwargs: Any
    ) -> Any:
        """A journal write: a few ms of fsync, so off the event loop. ``quick_first``: tried
        on the loop first with ``quick=True`` (``_local_call``), the same write in a thread
        where that would wait."""
        call = functools.partial(fn, *args, **kwargs)
        try:
            if quick_first:
                return await self._local_call(functools.partial(call, quick=True), call)
            return await offload(call)
        except KeyBusy:
            raise
        except StoreError as exc:
            raise StepFailed(ErrorInfo("StateError", str(exc))) from exc

    async def _local_call(self, fn: Callable[[], T], fallback: Callable[[], T] | None = None) -> T:
        """``fn()``, a local write (an fsync, a rename, a quick journal write), on the event
        loop itself while the run's disk has been quick: no thread hand-off. ``fallback``
        (default ``fn``) in a worker thread instead when ``fn`` raises ``WouldWait`` (the
        journal would have waited: another writer holds it, or it is a round trip away), or
        once calls were slow (see ``LoopWrites``: an fsync on a slow disk), which sends every
        later call of the run to a thread."""
        if self._loop_writes.allowed:
            started = time.monotonic()
            try:
                return fn()
            except WouldWait:
                pass
            finally:
                self._loop_writes.took(time.monotonic() - started)
        return await offload(fallback or fn)

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._stopping:
            raise Stopped()

    # -- events ------------------------------------------------------------------------------

    def _on_status(self, rec: StepRecord, status: str) -> None:
        if status == "RUNNING" and rec.state == "submitted":
            rec.state = "running"
            self._emit_step(rec)

    def _skip(self, rec: StepRecord, reason: str) -> None:
        rec.state, rec.skipped_because = "skipped", reason
        self._emit_step(rec, message=reason)

    def _warn(self, message: str) -> None:
        self.record.warnings.append(message)
        self._emit(Event("warning", self.elapsed(), message=message))

    def _emit_step(
        self, rec: StepRecord, *, message: str = "", data: dict[str, Any] | None = None
    ) -> None:
        # Running totals: a step's billed images only change before its own next event, so
        # the run's total is kept up to date here in O(1) (not summed over every step).
        self._billed_total += rec.images_billed - self._billed.get(rec.id, 0)
        self._billed[rec.id] = rec.images_billed
        payload = {
            "images": rec.images_billed,
            "cost_usd": str(rec.cost_usd),
            "run_images": self._billed_total,
            "run_cost_usd": str(wire.PRICE_PER_IMAGE_USD * self._billed_total),
        }
        if data:
            payload.update(data)
        if rec.state in ("done", "cached", "unavailable"):
            payload["files"] = [r.path for r in rec.results]
            # The emulator's engine labels, per file (None for a DashScope result).
            payload["results"] = [
                {"path": r.path, "fidelity": r.fidelity, "engine": r.engine, "note": r.note}
                for r in rec.results
            ]
        self._emit(
            Event(
                "step", self.elapsed(), step=rec.id, state=rec.state, message=message, data=payload
            )
        )

    def _emit(self, event: Event) -> None:
        self._emit_sink(event)


def file_name(sid: str, index: int) -> str:
    return f"{sid}.png" if index == 0 else f"{sid}-{index + 1}.png"


def is_mine(attempt: JournalAttempt) -> bool:
    """Recorded by this process (by any run in it)."""
    return attempt.owner_pid == os.getpid() and attempt.owner_host == worker_host()


#: (journal path, attempt id) of every attempt a run in this process is working on right now.
#: Several runs may share a process (threads, a notebook); a pid check cannot tell them apart.
LIVE_ATTEMPTS: set[tuple[str, int]] = set()


def service_time(value: datetime | None) -> str | None:
    """Back to the service's own format (its clock, no zone), as the record keeps it."""
    return wire.format_time(value) if value is not None else None


def error_info(exc: BackendError) -> ErrorInfo:
    return ErrorInfo(exc.code, redact_text(exc.message), exc.status, exc.request_id, exc.task_id)


def request_summary(req: Request) -> dict[str, Any]:
    """The request as the record and journal keep it: no payloads, no signatures."""
    body: dict[str, Any] = {
        "model": wire.MODEL,
        "input": {
            "function": req.step.function,
            "prompt": req.step.prompt,
            "base_image_url": req.image.shown,
        },
        "parameters": dict(req.parameters),
    }
    if req.mask is not None:
        body["input"]["mask_image_url"] = req.mask.shown
    return body
