"""One attempt of a step: take a slot, journal the intent, submit (retrying only what surely
created no task, looking a lost submit up in the task list), poll until terminal."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ..backends.models import TaskState
from ..errors import BackendError, TransportError
from ..report.record import Attempt, ErrorInfo, StepRecord
from ..store import KeyBusy
from .downloads import Downloads
from .polling import PollStats, wait_for_task
from .retry import submit_is_retryable
from .stepbase import Request, StepFailed, Stopped, error_info, request_summary, service_time


class Submission(Downloads):
    async def _attempt(
        self, sid: str, rec: StepRecord, req: Request, number: int
    ) -> tuple[TaskState, int]:
        attempt = Attempt(number=number, request=request_summary(req))
        rec.attempts.append(attempt)
        async with self._slots.slot(sid):
            if self._stopping:
                raise Stopped()
            attempt_id, submitted = await self._submit(sid, rec, req)
            task_id = submitted.task_id
            attempt.task_id, attempt.request_id = task_id, submitted.request_id
            attempt.submitted_at = self.elapsed()
            rec.state = "submitted"
            self._emit_step(rec, data={"task_id": task_id, "attempt": number})
            state = await self._wait(rec, attempt, req, task_id, attempt_id)
        return state, attempt_id

    async def _wait(
        self, rec: StepRecord, attempt: Attempt, req: Request, task_id: str, attempt_id: int
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
            attempt.error = error_info(exc)
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
        attempt.submit_time = service_time(state.submit_time)
        attempt.scheduled_time = service_time(state.scheduled_time)
        attempt.end_time = service_time(state.end_time)
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

    async def _submit(self, sid: str, rec: StepRecord, req: Request) -> tuple[int, Any]:
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
                raise Stopped()
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
                    raise StepFailed(error_info(error))
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
                    return attempt_id, Adopted(task_id)
                if failures >= policy.attempts:
                    info = error_info(error)
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
                raise StepFailed(error_info(error))
            await self._sleep(policy.delay(failures))

    async def _intent(self, sid: str, req: Request) -> int:
        request = {**request_summary(req), **req.meta}
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


@dataclass(frozen=True)
class Adopted:
    """A task found in the task list after a submit that got no answer."""

    task_id: str
    request_id: str | None = None
