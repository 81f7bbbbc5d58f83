"""One attempt of a step: take a slot, journal the intent, submit (retrying only what surely
created no task, looking a lost submit up in the task list), poll until terminal."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from ..backends.models import TaskState
from ..errors import BackendError, ImageInputError, TransportError
from ..report.record import Attempt, ErrorInfo, StepRecord
from ..store import KeyBusy
from .downloads import Downloads
from .polling import PollStats, duration_key, wait_for_task
from .retry import out_of_time, submit_is_retryable
from .stepbase import Busy, Request, StepFailed, Stopped, error_info, request_summary, service_time


class Submission(Downloads):
    async def _attempt(
        self, sid: str, rec: StepRecord, req: Request, number: int
    ) -> tuple[TaskState, int]:
        attempt = Attempt(number=number, request=request_summary(req))
        rec.attempts.append(attempt)
        async with self._slots.slot(sid):
            if self._stopping:
                raise Stopped()
            req = await self._materialize(sid, req)
            attempt.request = request_summary(req)
            deadline = time.monotonic() + float(req.step.timeout)
            reserved = await self._reserve(sid, req)
            try:
                attempt_id, submitted = await self._submit(sid, rec, req, deadline)
            except Busy:
                self._settle(reserved, 0)
                rec.attempts.remove(attempt)  # nothing was sent
                raise
            except BaseException:
                self._settle(reserved, 0)  # not created (a lost submit was looked up)
                raise
            self._submitted(sid)
            task_id = submitted.task_id
            attempt.task_id, attempt.request_id = task_id, submitted.request_id
            attempt.submitted_at = self.elapsed()
            rec.state = "submitted"
            self._emit_step(rec, data={"task_id": task_id, "attempt": number})
            try:
                state = await self._wait(rec, attempt, req, task_id, attempt_id)
            except BaseException:
                self._settle(reserved, reserved)  # created: it may bill, count it all
                raise
            self._settle(reserved, state.usage_images)
        return state, attempt_id

    async def _materialize(self, sid: str, req: Request) -> Request:
        """The request with its input values, built now that the slot is granted (or shared
        with a step over the same input). A retry after a release claims them again."""
        if sid not in self._claimed:
            self._claimed[sid] = [
                self._payloads.reclaim(p) for p in (req.image, req.mask) if p is not None
            ]
        try:
            image = await self._payloads.acquire(req.image)
            mask = await self._payloads.acquire(req.mask) if req.mask is not None else None
        except ImageInputError as exc:
            raise StepFailed(ErrorInfo("InvalidInput", str(exc))) from exc
        except BackendError as exc:
            raise StepFailed(error_info(exc)) from exc
        return replace(req, image=image, mask=mask)

    def _submitted(self, sid: str) -> None:
        """The step's inputs went out (or it ended): it no longer holds them, and an input
        no step still needs is dropped."""
        for prepared in self._claimed.pop(sid, ()):
            self._payloads.release(prepared)

    async def _reserve(self, sid: str, req: Request) -> int:
        """Reserve the most this task can bill; a step that does not fit is skipped."""
        if self.budget is None:
            return 0
        images = int(req.parameters.get("n", 1) or 1)
        first = self.budget.refused is None
        if not await self.budget.areserve(images, sid):  # a shared budget asks off the loop
            reason = self.budget.refused or "budget reached"
            if first:
                self._warn(f"{reason}: submitting nothing that does not fit")
            # Only this step stops: what was started within the budget goes on.
            raise Stopped(reason)
        return images

    def _settle(self, reserved: int, billed: int) -> None:
        if self.budget is not None:
            self.budget.settle(reserved, billed)

    async def _wait(
        self, rec: StepRecord, attempt: Attempt, req: Request, task_id: str, attempt_id: int
    ) -> TaskState:
        """Poll until terminal (the caller holds a slot) and journal a failed outcome."""
        self._in_flight.add(task_id)
        stats = PollStats()
        try:
            deadline = time.monotonic() + float(req.step.timeout)
            info = req.image.info
            state: TaskState = await wait_for_task(
                self.client,
                task_id,
                # What drives its duration: function, output size, n, upscale factor.
                duration_key(
                    req.step.function,
                    req.parameters,
                    info.width if info else None,
                    info.height if info else None,
                ),
                gate=self.gate,
                model=self.durations,
                policy=self.options.poll,
                deadline=deadline,
                # The poll times count from the submit's answer, not from now (the submit
                # token and the slot's bookkeeping came in between).
                submitted_at=self._answered.pop(attempt_id, None),
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

    async def _submit(
        self, sid: str, rec: StepRecord, req: Request, deadline: float
    ) -> tuple[int, Any]:
        """Journal the intent, then submit; returns (attempt id, submit result).

        Retried: throttling (its own budget), refusals (5xx JSON answers) and what surely never
        reached the service, with backoff until ``deadline`` (monotonic). A submit that may have
        reached the service is never sent again before the task list says it created nothing.
        """
        policy = self.options.retry
        failures = throttles = 0
        attempt_id: int | None = None
        while True:
            if self._stopping:
                if attempt_id is not None:
                    await self._journal_call(
                        self._journal.record_abandoned, attempt_id, "stopped before the submit"
                    )
                raise Stopped()
            # The run's submit lock is held until the outcome of this submit is known, the
            # lost-task lookup included: no other submit of this run can put a second unknown
            # task into the task list while we look ours up.
            async with self._submitting:
                # The intent is durable before the submission token is taken: its fsync is
                # not spent inside the submit window, and a crash while waiting for the token
                # leaves an intent whose submit never went out (the task list says so).
                if attempt_id is None:
                    attempt_id = await self._intent(sid, req)
                async with self.gate.submission():
                    if self._stopping:
                        continue  # the loop's top abandons the intent
                    sent_at = time.time()
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
                        self._answered[attempt_id] = time.monotonic()
                        # A commit without fsync (see store/journal.py): on the loop unless
                        # another writer (another process) holds the journal.
                        await self._journal_call(
                            self._journal.record_submitted,
                            attempt_id,
                            submitted.task_id,
                            submitted.request_id,
                            quick_first=True,
                        )
                        return attempt_id, submitted
                if isinstance(error, TransportError) and not submit_is_retryable(error):
                    adopted = await self._lost_submit(sid, req, attempt_id, error, sent_at)
                    if adopted is not None:
                        return attempt_id, adopted
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
            delay = policy.delay(failures)
            lost = isinstance(error, TransportError) and not submit_is_retryable(error)
            if not lost and not submit_is_retryable(error):
                await self._journal_call(
                    self._journal.record_failed, attempt_id, error.code, error.message
                )
                raise StepFailed(error_info(error))
            if out_of_time(policy, failures, delay, deadline):
                # Checked: no task was created (refused, never sent, or not in the task list).
                await self._journal_call(
                    self._journal.record_failed, attempt_id, error.code, error.message
                )
                info = error_info(error)
                info.message += f" (gave up after {failures} tries within the step's timeout)"
                raise StepFailed(info)
            if failures == 1 or failures % 5 == 0:
                self._warn(
                    f"{sid}: submit failed ({error.code}); retrying with backoff "
                    f"(try {failures + 1})"
                )
            await self._sleep(delay)

    async def _lost_submit(
        self, sid: str, req: Request, attempt_id: int, error: BackendError, sent_at: float
    ) -> Adopted | None:
        """A submit that may have created a task: find it, or be sure there is none.

        Returns the adopted task, or None when the task list shows no task of that submit (it
        may be sent again). When the list cannot tell, the step stops (``lost_submit="stop"``,
        the default: the intent stays in the journal and a re-run looks again) or, with
        ``lost_submit="resubmit"``, submits again saying that it may pay twice.
        """
        self._warn(
            f"{sid}: the submit got no answer ({error.code}); a task may have been created: "
            "looking for it in the task list"
        )
        n = int(req.parameters.get("n", 1) or 1)
        found = await self._lost.find(sent_at, time.time(), n)
        if found.verdict == "found" and found.task_id is not None:
            self._warn(f"{sid}: found task {found.task_id}; waiting for it")
            await self._journal_call(
                self._journal.record_submitted, attempt_id, found.task_id, None
            )
            return Adopted(found.task_id)
        if found.verdict == "none":
            self._warn(f"{sid}: no task of that submit in the task list; submitting again")
            return None
        why = found.reason or "the task list cannot tell"
        if self.options.lost_submit == "resubmit":
            self._warn(
                f"{sid}: cannot tell whether the lost submit created a task ({why}); "
                "submitting again as lost_submit=resubmit says: this may pay twice"
            )
            self._possibly_billed.update(found.candidates)
            return None
        raise StepFailed(
            ErrorInfo(
                "LostSubmit",
                f"the submit got no answer and the task list cannot tell whether it created a "
                f"task ({why}); not submitting again, as that could pay twice. Run again to "
                "look again, or use --resubmit-lost to submit anyway",
                task_id=found.candidates[0] if len(found.candidates) == 1 else None,
            )
        )

    async def _intent(self, sid: str, req: Request) -> int:
        request = {**request_summary(req), **req.meta}
        try:
            # On the loop where the journal never waits (SQLite on a quick local disk).
            attempt_id: int = await self._journal_call(
                self._journal.record_intent,
                req.key,
                step=sid,
                recipe=self._recipe_id,
                backend=self.backend,
                request=request,
                seed=int(req.parameters["seed"]),
                exclusive=not req.forced,
                quick_first=True,
            )
            self._working_on(attempt_id)
            return attempt_id
        except KeyBusy as exc:
            # Another run took the key between our lookup and now: wait for it (the
            # caller does, outside the slot and the submit lock).
            raise Busy(exc.attempts) from None


@dataclass(frozen=True)
class Adopted:
    """A task found in the task list after a submit that got no answer."""

    task_id: str
    request_id: str | None = None
