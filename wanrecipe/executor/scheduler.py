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
from collections.abc import Mapping, Sequence

from ..errors import BackendError, ImageInputError, RecipeError
from ..report.record import ErrorInfo, RunRecord, StepRecord
from .identity import input_digest, recorded_seed, step_identity, step_key
from .inputs import PreparedInput, StepImage, check_mask, prepare_input
from .recovery import Recovery
from .retry import task_failure_is_transient
from .stepbase import Request, RunOptions, StepFailed, Stopped, error_info

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
        except Stopped:
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
            entry = await asyncio.to_thread(self._journal.lookup_done, req.key)
            if entry is not None:
                return await self._from_cache(sid, rec, entry)
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
    ) -> Request:
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
            raise StepFailed(error_info(exc)) from exc

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
        return Request(step, image, mask, parameters, key, meta, forced)

    async def _input(self, ref: object) -> PreparedInput:
        return await prepare_input(
            ref,
            backend=self.backend,
            uploader=self.client,
            upload_threshold=self.options.upload_threshold,
        )

    # -- interrupt -------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        for task_id in list(self._in_flight):
            with contextlib.suppress(BackendError):
                # Only PENDING tasks can be cancelled; for running ones the service says no.
                await self.client.cancel(task_id)
        await asyncio.sleep(self.options.interrupt_grace_s)
        self.abort()
