"""The async DAG scheduler: runs every step of a recipe as soon as its inputs are ready.

Per step: render templates with upstream results -> prepare inputs (outside any slot, so slot
time is not spent reading files) -> take a running-task slot -> take a submission token ->
submit -> poll until terminal -> release the slot -> download results -> hand them on.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import images, wire
from ..errors import BackendError, ImageInputError, RecipeError, TransportError
from ..redact import redact_text, redact_url
from ..report.events import Event, EventSink, discard
from ..report.record import Attempt, ErrorInfo, ResultFile, RunRecord, StepRecord
from .inputs import DEFAULT_UPLOAD_THRESHOLD, PreparedInput, StepImage, check_mask, prepare_input
from .polling import DurationModel, PollPolicy, PollStats, wait_for_task
from .quota import Quota, QuotaGate
from .retry import RetryPolicy, submit_is_retryable

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


class StepFailed(Exception):
    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class _Stopped(Exception):
    """The run is stopping; this step must not start anything new."""


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
        on_event: EventSink = discard,
        durations: DurationModel | None = None,
    ) -> None:
        self.recipe = recipe
        self.client = client
        self.record = record
        self.run_dir = run_dir
        self.backend = backend
        self.options = options
        self._render = render
        self._emit_sink = on_event
        self.gate = QuotaGate(options.quota)
        self.durations = durations or DurationModel()
        self._t0 = time.monotonic()
        self._finished: dict[str, asyncio.Event] = {}
        self._outputs: dict[str, list[StepImage] | None] = {}
        self._stopping: str | None = None
        self._in_flight: set[str] = set()
        self._step_tasks: dict[str, asyncio.Task[None]] = {}
        self._wind_down_task: asyncio.Task[None] | None = None

    # -- public -------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def run(self) -> RunRecord:
        order = [s.id for s in self.recipe.steps]
        self._finished = {sid: asyncio.Event() for sid in order}
        self._step_tasks = {
            sid: asyncio.create_task(self._run_step(sid), name=f"step:{sid}") for sid in order
        }
        try:
            await asyncio.gather(*self._step_tasks.values(), return_exceptions=True)
        finally:
            if self._wind_down_task is not None:
                self._wind_down_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._wind_down_task
        return self.record

    def stop(self, reason: str) -> None:
        """Stop submitting; cancel PENDING tasks; let running ones finish within the grace."""
        if self._stopping:
            return
        self._stopping = reason
        self._emit(Event("warning", self.elapsed(), message=f"stopping: {reason}"))
        self._wind_down_task = asyncio.get_running_loop().create_task(
            self._wind_down(), name="wind-down"
        )

    def abort(self) -> None:
        """Stop now: cancel every step still working."""
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
            if rec.state not in ("done", "failed", "skipped"):
                rec.state = "failed"
                rec.error = ErrorInfo(
                    "Interrupted", f"interrupted ({self._stopping or 'cancelled'})"
                )
                self._emit_step(rec)
        finally:
            rec.finished_at = self.elapsed()
            self._outputs.setdefault(sid, None)
            self._finished[sid].set()

    async def _execute(
        self, sid: str, rec: StepRecord, upstream: Mapping[str, Sequence[StepImage]]
    ) -> list[StepImage]:
        try:
            step = self._render(self.recipe, sid, upstream)
        except RecipeError as exc:
            raise StepFailed(ErrorInfo("InvalidRecipe", str(exc))) from exc
        try:
            image = await prepare_input(
                step.image,
                backend=self.backend,
                uploader=self.client,
                upload_threshold=self.options.upload_threshold,
            )
            mask = None
            if step.mask is not None:
                mask = await prepare_input(
                    step.mask,
                    backend=self.backend,
                    uploader=self.client,
                    upload_threshold=self.options.upload_threshold,
                )
                check_mask(image, mask)
        except ImageInputError as exc:
            raise StepFailed(ErrorInfo("InvalidInput", str(exc))) from exc
        except BackendError as exc:
            raise StepFailed(_error(exc)) from exc

        parameters = dict(step.parameters)
        if "seed" not in parameters:
            # Drawn here and recorded, so every result can be reproduced.
            parameters["seed"] = random.SystemRandom().randrange(0, wire.PARAMS["seed"].maximum + 1)  # type: ignore[operator]
        attempts = step.retry if step.retry is not None else self.options.task_attempts
        attempts = max(1, int(attempts))
        for number in range(1, attempts + 1):
            state = await self._attempt(sid, rec, step, image, mask, parameters, number)
            if state.status == "SUCCEEDED":
                return await self._download(sid, rec, state)
            error = rec.attempts[-1].error or ErrorInfo("Unknown", "task did not succeed")
            if number == attempts or not wire.is_transient(error.code) or self._stopping:
                raise StepFailed(error)
            await self._sleep(self.options.retry.delay(number))
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        sid: str,
        rec: StepRecord,
        step: Any,
        image: PreparedInput,
        mask: PreparedInput | None,
        parameters: dict[str, Any],
        number: int,
    ) -> Any:
        attempt = Attempt(number=number, request=_request_summary(step, image, mask, parameters))
        rec.attempts.append(attempt)
        async with self.gate.slot():
            if self._stopping:
                raise _Stopped()
            submitted = await self._submit(step, image, mask, parameters)
            task_id = submitted.task_id
            attempt.task_id, attempt.request_id = task_id, submitted.request_id
            attempt.submitted_at = self.elapsed()
            rec.state = "submitted"
            self._emit_step(rec, data={"task_id": task_id, "attempt": number})
            self._in_flight.add(task_id)
            stats = PollStats()
            try:
                deadline = time.monotonic() + float(step.timeout)
                state = await wait_for_task(
                    self.client,
                    task_id,
                    step.function,
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
                    with contextlib.suppress(BackendError):
                        await self.client.cancel(task_id)
                raise StepFailed(attempt.error) from exc
            finally:
                self._in_flight.discard(task_id)
                attempt.queries = stats.queries
        attempt.noticed_at = self.elapsed()
        attempt.status = state.status
        attempt.submit_time = state.submit_time
        attempt.scheduled_time = state.scheduled_time
        attempt.end_time = state.end_time
        attempt.task_metrics = state.task_metrics
        attempt.usage_images = state.usage_images
        rec.images_billed += state.usage_images
        if state.status != "SUCCEEDED":
            attempt.error = ErrorInfo(
                state.code or state.status,
                state.message or f"task ended {state.status}",
                request_id=state.request_id,
                task_id=task_id,
            )
        return state

    async def _submit(
        self,
        step: Any,
        image: PreparedInput,
        mask: PreparedInput | None,
        parameters: dict[str, Any],
    ) -> Any:
        policy = self.options.retry
        failures = 0
        throttles = 0
        while True:
            if self._stopping:
                raise _Stopped()
            async with self.gate.submission():
                try:
                    return await self.client.submit(
                        step.function,
                        step.prompt,
                        image.value,
                        mask.value if mask else None,
                        parameters,
                        oss_resolve=image.is_oss or bool(mask and mask.is_oss),
                    )
                except BackendError as exc:
                    error = exc
            if error.status == 429:
                throttles += 1
                if throttles > policy.throttle_attempts:
                    raise StepFailed(_error(error))
                await self._sleep(policy.throttle_delay(throttles))
                continue
            failures += 1
            if not submit_is_retryable(error) or failures >= policy.attempts:
                info = _error(error)
                if isinstance(error, TransportError) and not submit_is_retryable(error):
                    info.message += (
                        " (the request may have reached the service: a task may have been "
                        "created and billed; not submitted again)"
                    )
                raise StepFailed(info)
            await self._sleep(policy.delay(failures))

    async def _download(self, sid: str, rec: StepRecord, state: Any) -> list[StepImage]:
        rec.state = "downloading"
        self._emit_step(rec)
        outputs: list[StepImage] = []
        jobs = []
        for index, result in enumerate(state.results):
            if result.url is None:
                rec.failed_outputs.append(
                    ErrorInfo(result.code or "Unknown", result.message or "", task_id=state.task_id)
                )
                continue
            name = f"{sid}.png" if index == 0 else f"{sid}-{index + 1}.png"
            jobs.append((index, result.url, self.run_dir / name))
        got = await asyncio.gather(*(self._fetch(url, dest) for _, url, dest in jobs))
        valid_until = time.time() + wire.URL_TTL_SECONDS
        for (index, url, dest), (sha, size) in zip(jobs, got, strict=True):
            info = await asyncio.to_thread(images.inspect_file, dest)
            rec.results.append(
                ResultFile(index, dest.name, sha, size, info.width, info.height, redact_url(url))
            )
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
                    valid_until,
                    self.backend,
                )
            )
        if not outputs:
            raise StepFailed(ErrorInfo("NoResults", "the task succeeded without any image"))
        return outputs

    async def _fetch(self, url: str, dest: Path) -> tuple[str, int]:
        policy = self.options.retry
        for number in range(1, policy.attempts + 1):
            try:
                got = await self.client.download(
                    url, dest, max_bytes=self.options.max_download_bytes
                )
                return got.sha256, got.size
            except BackendError as exc:
                retryable = (
                    isinstance(exc, TransportError) or exc.status >= 500 or exc.status == 429
                )
                if not retryable or number == policy.attempts:
                    raise StepFailed(
                        ErrorInfo(
                            exc.code,
                            f"result download failed: {redact_text(exc.message)}",
                            status=exc.status,
                        )
                    ) from exc
                await asyncio.sleep(policy.delay(number))
        raise AssertionError("unreachable")

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
        if rec.state == "done":
            payload["files"] = [r.path for r in rec.results]
        self._emit(
            Event(
                "step", self.elapsed(), step=rec.id, state=rec.state, message=message, data=payload
            )
        )

    def _emit(self, event: Event) -> None:
        self._emit_sink(event)


def _error(exc: BackendError) -> ErrorInfo:
    return ErrorInfo(exc.code, redact_text(exc.message), exc.status, exc.request_id, exc.task_id)


def _request_summary(
    step: Any, image: PreparedInput, mask: PreparedInput | None, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": wire.MODEL,
        "input": {"function": step.function, "prompt": step.prompt, "base_image_url": image.shown},
        "parameters": dict(parameters),
    }
    if mask is not None:
        body["input"]["mask_image_url"] = mask.shown
    return body
