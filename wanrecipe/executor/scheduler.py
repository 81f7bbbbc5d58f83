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
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BackendError, ImageInputError, RecipeError, StoreError
from ..report.record import ErrorInfo, RunRecord, StepRecord
from .downloads import ResultUnavailable
from .identity import input_digest, recorded_seed, step_identity, step_key
from .inputs import PreparedInput, StepImage, check_mask
from .preview import facts_dict, prepared_facts
from .recovery import Recovery
from .retry import task_failure_is_transient
from .stepbase import Busy, Request, RunOptions, StepFailed, Stopped, error_info

__all__ = ["RunOptions", "Scheduler", "StepFailed"]

_SEED_MAX = 2147483647


class Scheduler(Recovery):
    """Runs a recipe's steps as a DAG (see the module docstring)."""

    async def run(self) -> RunRecord:
        order = [s.id for s in self.recipe.steps]
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._finished = {sid: asyncio.Event() for sid in order}
        self._step_tasks = {
            sid: asyncio.create_task(self._run_step(sid), name=f"step:{sid}") for sid in order
        }
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        try:
            outcomes = await asyncio.gather(*self._step_tasks.values(), return_exceptions=True)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self._journal.sign_off)
            self._forget_mine()
            if self._wind_down_task is not None:
                self._wind_down_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._wind_down_task
        for outcome in outcomes:
            # Anything but a step's own failure is a bug: keep its traceback.
            if isinstance(outcome, Exception):
                raise outcome
        await self._count_possibly_billed()
        return self.record

    async def _count_possibly_billed(self) -> None:
        """Tasks that may be ours but belong to no step (a lost submit sent again under
        ``lost_submit=resubmit``): what they billed goes into the record, so its cost is what
        the service charged, not what was kept."""
        known = {a.task_id for s in self.record.steps.values() for a in s.attempts}
        for task_id in sorted(self._possibly_billed - known):
            try:
                async with self.gate.query():
                    state = await self.client.query(task_id)
            except BackendError as exc:
                self._warn(f"task {task_id} may be this run's; cannot query it: {exc.code}")
                continue
            if state.usage_images:
                self.record.unattributed_images += state.usage_images
                self.record.unattributed_tasks.append(task_id)
                self._warn(
                    f"task {task_id} may be this run's (a lost submit sent again): it billed "
                    f"{state.usage_images} image(s), counted in this run's cost"
                )

    async def _heartbeat(self) -> None:
        """Tell other runs on this state dir that this one is alive (``Journal.owner_live``)."""
        while True:
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self._journal.heartbeat)
            await asyncio.sleep(self._journal.heartbeat_interval_s)

    def stop(self, reason: str) -> None:
        """Stop submitting; cancel PENDING tasks; let running ones finish within the grace."""
        if self._stopping:
            return
        self._stopping = reason
        self._warn(f"stopping: {reason}")
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
        except ResultUnavailable as exc:
            # Paid for, not lost: the task id is in the error and the journal; a re-run
            # re-attaches to it. Dependants are skipped as for a failure.
            rec.state, rec.error = "unavailable", exc.error
            self._emit_step(rec, message=exc.error.message, data={"task_id": exc.error.task_id})
            if self.options.fail_fast:
                self.stop(f"step {sid}: result unavailable (--fail-fast)")
        except StepFailed as exc:
            rec.state, rec.error = "failed", exc.error
            self._emit_step(rec, message=f"{exc.error.code}: {exc.error.message}")
            if self.options.fail_fast:
                self.stop(f"step {sid} failed (--fail-fast)")
        except Stopped as exc:
            self._skip(rec, self._stopping or str(exc) or "stopped")
        except asyncio.CancelledError:
            if rec.state not in ("done", "cached", "failed", "skipped", "unavailable"):
                rec.state = "failed"
                rec.error = ErrorInfo(
                    "Interrupted",
                    f"interrupted ({self._stopping or 'cancelled'}); a task already submitted "
                    "is in the journal and a re-run picks up its result",
                )
                self._emit_step(rec)
        finally:
            self._submitted(sid)  # whatever it still held (it ended before submitting)
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
            return await self._execute_request(sid, rec, req)
        finally:
            if self._working.get(req.key) is mine:
                del self._working[req.key]
            mine.set()

    async def _execute_request(self, sid: str, rec: StepRecord, req: Request) -> list[StepImage]:
        # Waiting for another run's work on this step never goes past the step's timeout.
        deadline = time.monotonic() + float(req.step.timeout)
        while True:
            # The stored result, else what an earlier run left in flight: one read, on the
            # loop where the journal's reads are local (SQLite, blobs on disk), else a thread.
            if self._journal.reads_quick:
                entry, flights = self._look_up(req.key, req.forced)
            else:
                entry, flights = await asyncio.to_thread(self._look_up, req.key, req.forced)
            if entry is not None:
                return await self._from_cache(sid, rec, entry)
            try:
                resumed = await self._resume(sid, rec, req, flights)
                if resumed is not None:
                    return resumed
                return await self._attempts(sid, rec, req)
            except Busy as busy:
                # Another live run works on this key: wait for its outcome (outside any slot),
                # then look again: its stored result, or its task to take over.
                await self._wait_for_other_run(sid, req, busy.attempts, deadline)

    def _look_up(self, key: str, forced: bool) -> tuple[Any, Any]:
        entry = None if forced else self._journal.lookup_done(key)
        return entry, (self._journal.in_flight(key) if entry is None else None)

    async def _attempts(self, sid: str, rec: StepRecord, req: Request) -> list[StepImage]:
        """Submit, wait, download; a task that ends FAILED with a transient code is sent again
        (``retry:`` / ``task_attempts`` tries in all)."""
        step = req.step
        attempts = max(1, int(step.retry if step.retry is not None else self.options.task_attempts))
        for number in range(1, attempts + 1):
            state, attempt_id = await self._attempt(sid, rec, req, number)
            if state.status == "SUCCEEDED":
                return await self._download(sid, rec, state, attempt_id, float(step.timeout))
            error = rec.attempts[-1].error or ErrorInfo("Unknown", "task did not succeed")
            if number == attempts or not task_failure_is_transient(error.code) or self._stopping:
                raise StepFailed(error)
            await self._sleep(self.options.retry.delay(number))
        raise AssertionError("unreachable")

    async def _prepare(
        self, sid: str, rec: StepRecord, upstream: Mapping[str, Sequence[StepImage]]
    ) -> Request:
        try:
            step = self._render(self.recipe, sid, upstream)
        except RecipeError as exc:
            raise StepFailed(ErrorInfo("InvalidRecipe", str(exc))) from exc
        try:
            # Identified only (sha256 and header): the request value is built when the
            # slot is granted, and shared with every step over the same input.
            image = await self._input(sid, step.image)
            mask = await self._input(sid, step.mask) if step.mask is not None else None
            if mask is not None:
                check_mask(image, mask)
        except ImageInputError as exc:
            raise StepFailed(ErrorInfo("InvalidInput", str(exc))) from exc
        except BackendError as exc:
            raise StepFailed(error_info(exc)) from exc
        rec.prompt = step.prompt
        rec.inputs = {"base_image_url": self._facts(step.image, image)}
        if mask is not None:
            rec.inputs["mask_image_url"] = self._facts(step.mask, mask)

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
            if seed is None:
                seed = await self._journal_call(
                    self._journal.claim_seed,
                    recipe=self._recipe_id,
                    step=sid,
                    identity=identity,
                    seed=random.SystemRandom().randint(0, _SEED_MAX),
                )
            parameters["seed"] = seed
        key = step_key(step.function, step.prompt, parameters, inputs, self._realm)
        rec.key, rec.seed = key, int(parameters["seed"])
        rec.parameters = dict(parameters)
        forced = self.options.no_cache or sid in self.options.force
        meta = {"identity": identity, "seed_drawn": drawn}
        return Request(step, image, mask, parameters, key, meta, forced)

    async def _input(self, sid: str, ref: object) -> PreparedInput:
        prepared = await self._payloads.identify(ref)
        self._claimed.setdefault(sid, []).append(prepared)
        return prepared

    def _facts(self, ref: object, prepared: PreparedInput) -> dict[str, Any]:
        """The input as the lock file keeps it, from what identifying it found."""
        return facts_dict(prepared_facts(self.recipe, ref, prepared.sha256, prepared.info))

    # -- interrupt -------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        for task_id in list(self._in_flight):
            with contextlib.suppress(BackendError):
                # Only PENDING tasks can be cancelled; for running ones the service says no.
                await self.client.cancel(task_id)
        await asyncio.sleep(self.options.interrupt_grace_s)
        self.abort()
