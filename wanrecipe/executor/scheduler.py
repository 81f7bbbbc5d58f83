"""The async DAG scheduler: runs every step of a recipe as soon as its inputs are ready.

Per step: render templates with upstream results -> prepare inputs (outside any slot, so slot
time is not spent reading files) -> content key -> cache lookup -> re-attach to what an earlier
run left in flight -> take a running-task slot -> take a submission token -> journal the intent
-> submit -> journal the task id -> poll until terminal -> release the slot -> download the
results into the store -> journal done -> hand them on.

Never pay twice: the journal knows every task we may have paid for, before we submit it. A
re-run reuses done results, re-attaches to submitted tasks, and looks for the task of an intent
whose submit never answered (crash, dropped connection) in the account's task list before it
submits again.

Failures are values: a failed step marks its dependants skipped and independent branches go on
(unless fail-fast). An interrupt stops submitting, cancels tasks still PENDING, waits a grace
period for running ones and keeps everything finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .. import images, wire
from ..backends.models import TaskState
from ..errors import BackendError, ImageInputError, RecipeError, StoreError, TransportError
from ..redact import redact_text, redact_url
from ..report.events import Event, EventSink, discard
from ..report.record import Attempt, ErrorInfo, ResultFile, RunRecord, StepRecord
from ..store import Attempt as JournalAttempt
from ..store import DoneEntry, KeyBusy, ResultRecord, StateDir
from .budget import Budget
from .identity import input_digest, realm_of, recorded_seed, step_identity, step_key
from .inputs import DEFAULT_UPLOAD_THRESHOLD, PreparedInput, StepImage, check_mask, prepare_input
from .lost import LostTaskFinder
from .polling import DurationModel, PollPolicy, PollStats, wait_for_task
from .quota import Quota, QuotaGate
from .retry import RetryPolicy, read_retryable, submit_is_retryable, task_failure_is_transient
from .slots import PrioritySlots, priorities

#: Result downloads are capped: 16384x16384 RGB PNG is the largest output there is.
DEFAULT_MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024
_SEED_MAX = 2147483647


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


class StepFailed(Exception):
    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class _Stopped(Exception):
    """The run is stopping; this step must not start anything new."""


@dataclass
class _Request:
    """One step's request, ready to send, with what identifies it."""

    step: Any  # RenderedStep
    image: PreparedInput
    mask: PreparedInput | None
    parameters: dict[str, Any]
    key: str
    meta: dict[str, Any]  # stored with the journal's request summary
    forced: bool


class Scheduler:
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
        self.recipe = recipe
        self.client = client
        self.record = record
        self.run_dir = run_dir
        self.backend = backend
        self.options = options
        self.state = state
        self._journal = state.journal
        self._realm = realm_of(backend)  # emulator results never stand in for paid ones
        self._recipe_id = str(recipe.path)
        self._render = render
        self._emit_sink = on_event
        self.gate = gate or QuotaGate(options.quota)
        #: Cost reserved before each submit, settled with what was billed (None: no budget).
        if budget is None and options.max_usd is not None:
            budget = Budget(options.max_usd)
        self.budget = budget
        self.durations = durations or DurationModel(options.poll)
        self._t0 = time.monotonic()
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
            warn=self._warn,
        )  # fmt: skip
        # One submit in flight at a time (intent -> submit -> task id journaled): a crash then
        # leaves at most one intent without its task id, and the task list names its task
        # without doubt (two lost submits at once could not be told apart). Costs nothing at
        # the service's 2 submits/s: a submit takes a round trip and two fsyncs.
        self._submitting = asyncio.Lock()
        self._incoming = state.path / "incoming"
        # A batch graph orders its own (row by row); a recipe by its longest chains.
        order = recipe.priorities() if hasattr(recipe, "priorities") else priorities(recipe)
        self._slots = PrioritySlots(
            self.gate, order, [s.id for s in recipe.steps if not recipe.deps(s.id)]
        )

    # -- public -------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def run(self) -> RunRecord:
        order = [s.id for s in self.recipe.steps]
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._finished = {sid: asyncio.Event() for sid in order}
        self._step_tasks = {
            sid: asyncio.create_task(self._run_step(sid), name=f"step:{sid}") for sid in order
        }
        try:
            outcomes = await asyncio.gather(*self._step_tasks.values(), return_exceptions=True)
        finally:
            if self._wind_down_task is not None:
                self._wind_down_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._wind_down_task
        for outcome in outcomes:
            # Anything but a step's own failure is a bug: keep its traceback.
            if isinstance(outcome, Exception):
                raise outcome
        return self.record

    def stop(self, reason: str, *, wind_down: bool = True) -> None:
        """Stop submitting; cancel PENDING tasks; let running ones finish within the grace.

        ``wind_down=False`` (the budget is reached): only stop submitting; tasks in flight are
        paid for within the budget and finish."""
        if self._stopping:
            return
        self._stopping = reason
        self._warn(f"stopping: {reason}")
        if not wind_down:
            return
        self._wind_down_task = asyncio.get_running_loop().create_task(
            self._wind_down(), name="wind-down"
        )

    def abort(self) -> None:
        """Stop now: cancel every step still working. Submitted tasks stay in the journal,
        so the next run picks up their results."""
        self._stopping = self._stopping or "aborted"
        for task in self._step_tasks.values():
            task.cancel()

    @property
    def stopping(self) -> str | None:
        return self._stopping

    @property
    def budget_reached(self) -> bool:
        return self.budget is not None and self.budget.refused is not None

    # -- steps ---------------------------------------------------------------------------

    async def _run_step(self, sid: str) -> None:
        rec = self.record.steps[sid]
        try:
            upstream: dict[str, list[StepImage]] = {}
            for dep in self.recipe.deps(sid):
                await self._finished[dep].wait()
                outs = self._outputs.get(dep)
                if outs is None:
                    self._skip(rec, f"{dep} did not finish")
                    return
                upstream[dep] = outs
            if self._stopping:
                self._skip(rec, self._stopping)
                return
            rec.started_at = self.elapsed()
            self._outputs[sid] = await self._execute(sid, rec, upstream)
            if rec.state != "cached":
                rec.state = "done"
            self._emit_step(rec)
        except StepFailed as exc:
            rec.state, rec.error = "failed", exc.error
            self._emit_step(rec, message=f"{exc.error.code}: {exc.error.message}")
            if self.options.fail_fast:
                self.stop(f"step {sid} failed (--fail-fast)")
        except _Stopped:
            self._skip(rec, self._stopping or "stopped")
        except asyncio.CancelledError:
            if rec.state not in ("done", "cached", "failed", "skipped"):
                rec.state = "failed"
                rec.error = ErrorInfo(
                    "Interrupted",
                    f"interrupted ({self._stopping or 'cancelled'}); a task already submitted "
                    "is in the journal and a re-run picks up its result",
                )
                self._emit_step(rec)
        finally:
            self._slots.left(sid)
            rec.finished_at = self.elapsed()
            self._outputs.setdefault(sid, None)
            self._finished[sid].set()

    async def _execute(
        self, sid: str, rec: StepRecord, upstream: Mapping[str, Sequence[StepImage]]
    ) -> list[StepImage]:
        req = await self._prepare(sid, rec, upstream)
        if not req.forced:
            # The same request elsewhere in this run (rows of a batch that share a step):
            # wait for it, then take its result from the store instead of paying again.
            while (twin := self._working.get(req.key)) is not None:
                self._slots.left(sid)  # not a starter while it waits: the others may go
                await twin.wait()
        mine = asyncio.Event()
        self._working.setdefault(req.key, mine)
        try:
            if not req.forced:
                entry = await asyncio.to_thread(self._journal.lookup_done, req.key)
                if entry is not None:
                    return await self._from_cache(sid, rec, entry)
            return await self._execute_request(sid, rec, req)
        finally:
            if self._working.get(req.key) is mine:
                del self._working[req.key]
            mine.set()

    async def _execute_request(self, sid: str, rec: StepRecord, req: _Request) -> list[StepImage]:
        resumed = await self._resume(sid, rec, req)
        if resumed is not None:
            return resumed
        step = req.step
        attempts = max(1, int(step.retry if step.retry is not None else self.options.task_attempts))
        for number in range(1, attempts + 1):
            state, attempt_id = await self._attempt(sid, rec, req, number)
            if state.status == "SUCCEEDED":
                return await self._download(sid, rec, state, attempt_id)
            error = rec.attempts[-1].error or ErrorInfo("Unknown", "task did not succeed")
            if number == attempts or not task_failure_is_transient(error.code) or self._stopping:
                raise StepFailed(error)
            await self._sleep(self.options.retry.delay(number))
        raise AssertionError("unreachable")

    async def _prepare(
        self, sid: str, rec: StepRecord, upstream: Mapping[str, Sequence[StepImage]]
    ) -> _Request:
        try:
            step = self._render(self.recipe, sid, upstream)
        except RecipeError as exc:
            raise StepFailed(ErrorInfo("InvalidRecipe", str(exc))) from exc
        try:
            image = await self._input(step.image)
            mask = await self._input(step.mask) if step.mask is not None else None
            if mask is not None:
                check_mask(image, mask)
        except ImageInputError as exc:
            raise StepFailed(ErrorInfo("InvalidInput", str(exc))) from exc
        except BackendError as exc:
            raise StepFailed(_error(exc)) from exc

        inputs = {"base_image_url": input_digest(image.sha256, image.value)}
        if mask is not None:
            inputs["mask_image_url"] = input_digest(mask.sha256, mask.value)
        parameters = dict(step.parameters)
        identity = step_identity(step.function, step.prompt, parameters, inputs, self._realm)
        drawn = "seed" not in parameters
        if drawn:
            # Drawn once, then found again by identity on every later run: the result is
            # reproducible and the cache key stable.
            seed = self.options.locked_seeds.get(sid)
            if seed is None:
                seed = await asyncio.to_thread(
                    recorded_seed,
                    self._journal,
                    recipe=self._recipe_id,
                    step=sid,
                    identity=identity,
                )
            parameters["seed"] = (
                seed if seed is not None else random.SystemRandom().randint(0, _SEED_MAX)
            )
        key = step_key(step.function, step.prompt, parameters, inputs, self._realm)
        rec.key, rec.seed = key, int(parameters["seed"])
        forced = self.options.no_cache or sid in self.options.force
        meta = {"identity": identity, "seed_drawn": drawn}
        return _Request(step, image, mask, parameters, key, meta, forced)

    async def _input(self, ref: object) -> PreparedInput:
        return await prepare_input(
            ref,
            backend=self.backend,
            uploader=self.client,
            upload_threshold=self.options.upload_threshold,
        )

    # -- cache and recovery ------------------------------------------------------------

    async def _from_cache(self, sid: str, rec: StepRecord, entry: DoneEntry) -> list[StepImage]:
        outputs = []
        for result in entry.results:
            dest = self.run_dir / _file_name(sid, result.index)
            await asyncio.to_thread(self.state.blobs.export, result.sha256, dest)
            width, height = result.width or 0, result.height or 0
            rec.results.append(
                ResultFile(
                    result.index,
                    dest.name,
                    result.sha256,
                    result.size,
                    width,
                    height,
                    result.url_redacted or "",
                )
            )
            # No live URL: dependants get the local copy (data URI or upload).
            outputs.append(
                StepImage(
                    sid,
                    result.index,
                    dest,
                    result.sha256,
                    result.size,
                    width,
                    height,
                    None,
                    0.0,
                    self.backend,
                )
            )
        rec.state = "cached"
        rec.cached_from = entry.attempt.task_id
        return outputs

    async def _resume(self, sid: str, rec: StepRecord, req: _Request) -> list[StepImage] | None:
        """Pick up what an earlier run left in flight for this key, if anything."""
        flights = await asyncio.to_thread(self._journal.in_flight, req.key)
        for old in sorted(flights, key=lambda a: a.created_at):
            if old.owner_pid and old.owner_alive() and not _mine(old):
                # Another live run is on it right now: wait for its outcome.
                outputs = await self._wait_for_other_run(sid, rec, req, old)
                if outputs is not None:
                    return outputs
                continue
            if old.backend != self.backend:
                self._warn(
                    f"{sid}: an earlier run left task {old.task_id or '(unknown)'} on "
                    f"{old.backend}; it may have been billed there. Not waiting for it here."
                )
                await self._journal_call(
                    self._journal.record_abandoned, old.id, f"backend changed to {self.backend}"
                )
                continue
            if old.dangling:
                self._warn(
                    f"{sid}: an earlier run stopped while submitting (attempt {old.id}): a task "
                    "may have been created and billed; looking for it in the task list"
                )
                task_id = await self._lost.find(old.created_at)
                if task_id is None:
                    self._warn(f"{sid}: no such task in the task list; submitting")
                    await self._journal_call(
                        self._journal.record_abandoned, old.id, "no task found in the task list"
                    )
                    continue
                self._warn(f"{sid}: found task {task_id}; picking up its result")
                await self._journal_call(self._journal.record_submitted, old.id, task_id, None)
            elif old.task_id is None:
                continue
            else:
                task_id = old.task_id
            outputs = await self._reattach(sid, rec, req, old.id, task_id)
            if outputs is not None:
                return outputs
        return None

    async def _reattach(
        self, sid: str, rec: StepRecord, req: _Request, attempt_id: int, task_id: str
    ) -> list[StepImage] | None:
        attempt = Attempt(
            number=len(rec.attempts) + 1, request=_summary(req), task_id=task_id, reattached=True
        )
        rec.attempts.append(attempt)
        async with self._slots.slot(sid):
            rec.state = "submitted"
            self._emit_step(rec, message=f"re-attached to task {task_id}")
            state = await self._wait(rec, attempt, req, task_id, attempt_id)
        if self.budget is not None:
            self.budget.add_billed(state.usage_images)
        if state.status == "SUCCEEDED":
            return await self._download(sid, rec, state, attempt_id)
        if state.status == "UNKNOWN":
            self._warn(f"{sid}: task {task_id} is unknown to the service (expired?); submitting")
            await self._journal_call(
                self._journal.record_abandoned, attempt_id, "unknown to the service"
            )
        return None

    async def _wait_for_other_run(
        self, sid: str, rec: StepRecord, req: _Request, old: JournalAttempt
    ) -> list[StepImage] | None:
        self._warn(f"{sid}: another run (pid {old.owner_pid}) is submitting this step; waiting")
        deadline = time.monotonic() + float(req.step.timeout)
        while time.monotonic() < deadline:
            await self._sleep(1.0)
            entry = await asyncio.to_thread(self._journal.lookup_done, req.key)
            if entry is not None:
                return await self._from_cache(sid, rec, entry)
            now = await asyncio.to_thread(self._journal.get, old.id)
            if now.finished or (now.task_id and not now.owner_alive()):
                return None
        return None

    # -- one attempt ----------------------------------------------------------------------

    async def _attempt(
        self, sid: str, rec: StepRecord, req: _Request, number: int
    ) -> tuple[TaskState, int]:
        attempt = Attempt(number=number, request=_summary(req))
        rec.attempts.append(attempt)
        async with self._slots.slot(sid):
            if self._stopping:
                raise _Stopped()
            reserved = self._reserve(sid, req)
            try:
                attempt_id, submitted = await self._submit(sid, rec, req)
            except BaseException:
                self._settle(reserved, 0)  # not created (a lost submit was looked up)
                raise
            task_id = submitted.task_id
            attempt.task_id, attempt.request_id = task_id, submitted.request_id
            attempt.submitted_at = self.elapsed()
            rec.state = "submitted"
            self._emit_step(rec, data={"task_id": task_id, "attempt": number})
            try:
                state = await self._wait(rec, attempt, req, task_id, attempt_id)
            except BaseException:
                self._settle(reserved, reserved)  # created: may bill, count it all
                raise
            self._settle(reserved, state.usage_images)
        return state, attempt_id

    def _reserve(self, sid: str, req: _Request) -> int:
        """Reserve the most this task can bill; at the budget, stop submitting."""
        if self.budget is None:
            return 0
        images = int(req.parameters.get("n", 1) or 1)
        if not self.budget.reserve(images, sid):
            self.stop(self.budget.refused or "budget reached", wind_down=False)
            raise _Stopped()
        return images

    def _settle(self, reserved: int, billed: int) -> None:
        if self.budget is not None:
            self.budget.settle(reserved, billed)

    async def _wait(
        self, rec: StepRecord, attempt: Attempt, req: _Request, task_id: str, attempt_id: int
    ) -> TaskState:
        """Poll until terminal (the caller holds a slot) and journal a failed outcome."""
        self._in_flight.add(task_id)
        stats = PollStats()
        try:
            deadline = time.monotonic() + float(req.step.timeout)
            state: TaskState = await wait_for_task(
                self.client,
                task_id,
                req.step.function,
                gate=self.gate,
                model=self.durations,
                policy=self.options.poll,
                deadline=deadline,
                stats=stats,
                on_status=lambda status: self._on_status(rec, status),
            )
        except BackendError as exc:
            attempt.error = _error(exc)
            attempt.status = "FAILED"
            if exc.code == "WaitTaskTimeout":
                try:
                    await self.client.cancel(task_id)
                    await self._journal_call(
                        self._journal.record_failed,
                        attempt_id,
                        "CANCELED",
                        "canceled after the step timeout",
                    )
                except BackendError:
                    attempt.error.message += (
                        "; the task still runs on the service: a re-run picks up its result"
                    )
            raise StepFailed(attempt.error) from exc
        finally:
            self._in_flight.discard(task_id)
            attempt.queries = stats.queries
        attempt.noticed_at = self.elapsed()
        attempt.status = state.status
        attempt.submit_time = _service_time(state.submit_time)
        attempt.scheduled_time = _service_time(state.scheduled_time)
        attempt.end_time = _service_time(state.end_time)
        attempt.task_metrics = dict(state.task_metrics)
        attempt.usage_images = state.usage_images
        rec.images_billed += state.usage_images
        if state.status != "SUCCEEDED":
            attempt.error = ErrorInfo(
                state.code or state.status,
                state.message or f"task ended {state.status}",
                request_id=state.request_id,
                task_id=task_id,
            )
            if state.status != "UNKNOWN":
                await self._journal_call(
                    self._journal.record_failed,
                    attempt_id,
                    attempt.error.code,
                    attempt.error.message,
                )
        return state

    async def _submit(self, sid: str, rec: StepRecord, req: _Request) -> tuple[int, Any]:
        """Journal the intent, then submit; returns (attempt id, submit result)."""
        policy = self.options.retry
        failures = throttles = 0
        attempt_id: int | None = None
        created = time.time()
        while True:
            if self._stopping:
                if attempt_id is not None:
                    await self._journal_call(
                        self._journal.record_abandoned, attempt_id, "stopped before the submit"
                    )
                raise _Stopped()
            async with self._submitting, self.gate.submission():
                if attempt_id is None:
                    attempt_id = await self._intent(sid, req)
                    created = time.time()
                try:
                    submitted = await self.client.submit(
                        req.step.function,
                        req.step.prompt,
                        req.image.value,
                        req.mask.value if req.mask else None,
                        req.parameters,
                        oss_resolve=req.image.is_oss or bool(req.mask and req.mask.is_oss),
                    )
                except BackendError as exc:
                    error = exc
                else:
                    await self._journal_call(
                        self._journal.record_submitted,
                        attempt_id,
                        submitted.task_id,
                        submitted.request_id,
                    )
                    return attempt_id, submitted
            if error.status == 429:
                throttles += 1
                if throttles > policy.throttle_attempts:
                    await self._journal_call(
                        self._journal.record_failed, attempt_id, error.code, error.message
                    )
                    raise StepFailed(_error(error))
                await self._sleep(policy.throttle_delay(throttles))
                continue
            failures += 1
            if isinstance(error, TransportError) and not submit_is_retryable(error):
                # The request may have reached the service: find its task before anything else.
                self._warn(
                    f"{sid}: the submit got no answer; a task may have been created: "
                    "looking for it in the task list"
                )
                await asyncio.sleep(1.0)
                task_id = await self._lost.find(created)
                if task_id is not None:
                    self._warn(f"{sid}: found task {task_id}; waiting for it")
                    await self._journal_call(
                        self._journal.record_submitted, attempt_id, task_id, None
                    )
                    return attempt_id, _Adopted(task_id)
                if failures >= policy.attempts:
                    info = _error(error)
                    info.message += (
                        " (the request may have reached the service: a task may "
                        "have been created and billed)"
                    )
                    raise StepFailed(info)
                self._warn(f"{sid}: no task of that submit in the task list; submitting again")
            elif not submit_is_retryable(error) or failures >= policy.attempts:
                await self._journal_call(
                    self._journal.record_failed, attempt_id, error.code, error.message
                )
                raise StepFailed(_error(error))
            await self._sleep(policy.delay(failures))

    async def _intent(self, sid: str, req: _Request) -> int:
        request = {**_summary(req), **req.meta}
        while True:
            try:
                attempt_id: int = await self._journal_call(
                    self._journal.record_intent,
                    req.key,
                    step=sid,
                    recipe=self._recipe_id,
                    backend=self.backend,
                    request=request,
                    seed=int(req.parameters["seed"]),
                    exclusive=not req.forced,
                )
                return attempt_id
            except KeyBusy:
                # Another run took the key between our lookup and now: wait for it.
                self._warn(f"{sid}: another run is working on this step; waiting")
                await self._sleep(1.0)
                entry = await asyncio.to_thread(self._journal.lookup_done, req.key)
                if entry is not None:
                    raise StepFailed(
                        ErrorInfo("Busy", "another run finished this step; run again to use it")
                    ) from None

    async def _download(
        self, sid: str, rec: StepRecord, state: TaskState, attempt_id: int
    ) -> list[StepImage]:
        rec.state = "downloading"
        self._emit_step(rec)
        jobs = []
        for index, result in enumerate(state.results):
            if result.url is None:
                rec.failed_outputs.append(
                    ErrorInfo(result.code or "Unknown", result.message or "", task_id=state.task_id)
                )
                continue
            jobs.append((index, result.url))
        got = await asyncio.gather(
            *(self._fetch(url, state.task_id, index) for index, url in jobs),
            return_exceptions=True,
        )
        failures = [g for g in got if isinstance(g, BaseException)]
        stored: list[tuple[int, str, Any]] = [
            (index, url, g)
            for (index, url), g in zip(jobs, got, strict=True)
            if not isinstance(g, BaseException)
        ]
        outputs: list[StepImage] = []
        records: list[ResultRecord] = []
        for index, url, (sha, size, info) in stored:
            dest = self.run_dir / _file_name(sid, index)
            await asyncio.to_thread(self.state.blobs.export, sha, dest)
            shown = redact_url(url)
            rec.results.append(
                ResultFile(index, dest.name, sha, size, info.width, info.height, shown)
            )
            records.append(ResultRecord(index, sha, size, info.width, info.height, shown))
            outputs.append(
                StepImage(
                    sid,
                    index,
                    dest,
                    sha,
                    size,
                    info.width,
                    info.height,
                    url,
                    _url_valid_until(url),
                    self.backend,
                )
            )
        if records:
            await self._journal_call(
                self._journal.record_done, attempt_id, records, state.usage_images
            )
        if failures:
            # What was downloaded is stored and journaled; the task stays re-attachable.
            raise failures[0]
        if not outputs:
            raise StepFailed(ErrorInfo("NoResults", "the task succeeded without any image"))
        return outputs

    async def _fetch(self, url: str, task_id: str, index: int) -> tuple[str, int, Any]:
        """Download one result into the store; returns (sha256, size, image info)."""
        policy = self.options.retry
        dest = self._incoming / f"{task_id}-{index}.png"
        for number in range(1, policy.attempts + 1):
            try:
                got = await self.client.download(
                    url, dest, max_bytes=self.options.max_download_bytes
                )
                break
            except BackendError as exc:
                if not read_retryable(exc) or number == policy.attempts:
                    raise StepFailed(
                        ErrorInfo(
                            exc.code,
                            f"result download failed: {redact_text(exc.message)}",
                            status=exc.status,
                        )
                    ) from exc
                await asyncio.sleep(policy.delay(number))
        info = await asyncio.to_thread(images.inspect_file, got.path)
        blob = await asyncio.to_thread(self.state.blobs.put_file, got.path, move=True)
        return blob.sha256, blob.size, info

    async def _journal_call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A journal write: a few ms of fsync, so off the event loop."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except KeyBusy:
            raise
        except StoreError as exc:
            raise StepFailed(ErrorInfo("StateError", str(exc))) from exc

    # -- interrupt -------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        for task_id in list(self._in_flight):
            with contextlib.suppress(BackendError):
                # Only PENDING tasks can be cancelled; for running ones the service says no.
                await self.client.cancel(task_id)
        await asyncio.sleep(self.options.interrupt_grace_s)
        self.abort()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._stopping:
            raise _Stopped()

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
        payload = {
            "images": rec.images_billed,
            "cost_usd": str(rec.cost_usd),
            "run_images": self.record.images_billed,
            "run_cost_usd": str(self.record.cost_usd),
        }
        if data:
            payload.update(data)
        if rec.state in ("done", "cached"):
            payload["files"] = [r.path for r in rec.results]
        self._emit(
            Event(
                "step", self.elapsed(), step=rec.id, state=rec.state, message=message, data=payload
            )
        )

    def _emit(self, event: Event) -> None:
        self._emit_sink(event)


@dataclass(frozen=True)
class _Adopted:
    """A task found in the task list after a submit that got no answer."""

    task_id: str
    request_id: str | None = None


def _url_valid_until(url: str) -> float:
    """When a result URL stops working: its signed ``Expires`` (epoch seconds, OSS style)
    when it has one, else the documented 24 h. Dependants send the stored copy instead of a
    URL that would expire before the service fetches it."""
    from urllib.parse import parse_qs, urlsplit

    now = time.time()
    default = now + wire.URL_TTL_SECONDS
    with contextlib.suppress(ValueError, LookupError):
        expires = float(parse_qs(urlsplit(url).query)["Expires"][0])
        return min(expires, default)
    return default


def _file_name(sid: str, index: int) -> str:
    return f"{sid}.png" if index == 0 else f"{sid}-{index + 1}.png"


def _mine(attempt: JournalAttempt) -> bool:
    return attempt.owner_pid == os.getpid() and attempt.owner_host == socket.gethostname()


def _service_time(value: datetime | None) -> str | None:
    """Back to the service's own format (its clock, no zone), as the record keeps it."""
    return wire.format_time(value) if value is not None else None


def _error(exc: BackendError) -> ErrorInfo:
    return ErrorInfo(exc.code, redact_text(exc.message), exc.status, exc.request_id, exc.task_id)


def _summary(req: _Request) -> dict[str, Any]:
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
