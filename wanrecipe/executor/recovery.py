"""Recovery: pick up what an earlier run left in flight for a step (re-attach to its task,
find a lost submit's task in the task list) and wait for another live run working on it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..report.record import Attempt, ErrorInfo, StepRecord
from ..store import Attempt as JournalAttempt
from .inputs import StepImage
from .lost import AFTER_S
from .stepbase import Busy, Request, StepFailed, is_mine, request_summary
from .submission import Submission


class Recovery(Submission):
    async def _resume(
        self, sid: str, rec: StepRecord, req: Request, flights: Any = None
    ) -> list[StepImage] | None:
        """Pick up what an earlier run left in flight for this key, if anything (``flights``:
        the journal's in-flight attempts when the caller has just read them)."""
        if flights is None:
            flights = await asyncio.to_thread(self._journal.in_flight, req.key)
        for old in sorted(flights, key=lambda a: a.created_at):
            if await asyncio.to_thread(self._worked_on, old):
                # A live run (another process, or another run in this one) is on it right
                # now: the caller waits for its outcome.
                raise Busy((old,))
            if not is_mine(old):
                # An orphan (its worker stopped heartbeating, or its pid is gone): take it
                # over first, so exactly one live worker reconciles it; the others now see
                # a live owner and wait (docs/state.md, "Liveness").
                taken = await self._journal_call(self._journal.take_over, old)
                if taken is None:
                    raise Busy((await asyncio.to_thread(self._journal.get, old.id),))
                if old.owner_host != taken.owner_host:
                    self._warn(
                        f"{sid}: {old.owner_host} (pid {old.owner_pid}) stopped working on "
                        f"attempt {old.id}; this worker takes it over"
                    )
                old = taken
                self._working_on(old.id)
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
                # Under the submit lock: no submit of this run can add an unknown task to
                # the list meanwhile. The old run's submit ended before it died: before this
                # run started, or (a worker of a team that has run all along) before now.
                n = int(req.parameters.get("n", 1) or 1)
                until = min(old.created_at + AFTER_S, time.time())
                async with self._submitting:
                    found = await self._lost.find(old.created_at, until, n)
                if found.verdict == "none":
                    self._warn(f"{sid}: no such task in the task list; submitting")
                    await self._journal_call(
                        self._journal.record_abandoned, old.id, "no task found in the task list"
                    )
                    continue
                if found.verdict == "unsure" or found.task_id is None:
                    why = found.reason or "the task list cannot tell"
                    if self.options.lost_submit != "resubmit":
                        raise StepFailed(
                            ErrorInfo(
                                "LostSubmit",
                                f"an earlier run's submit (attempt {old.id}) may have created "
                                f"a task and the task list cannot tell ({why}); not "
                                "submitting again, as that could pay twice. Use "
                                "--resubmit-lost to submit anyway",
                            )
                        )
                    self._warn(
                        f"{sid}: cannot tell whether attempt {old.id} created a task ({why}); "
                        "submitting again as lost_submit=resubmit says: this may pay twice"
                    )
                    self._possibly_billed.update(found.candidates)
                    await self._journal_call(
                        self._journal.record_abandoned, old.id, f"resubmitted: {why}"
                    )
                    continue
                task_id = found.task_id
                self._warn(f"{sid}: found task {task_id}; picking up its result")
                await self._journal_call(self._journal.record_submitted, old.id, task_id, None)
            elif old.task_id is None:
                continue
            else:
                task_id = old.task_id
            self._working_on(old.id)
            outputs = await self._reattach(sid, rec, req, old.id, task_id)
            if outputs is not None:
                return outputs
        return None

    async def _reattach(
        self, sid: str, rec: StepRecord, req: Request, attempt_id: int, task_id: str
    ) -> list[StepImage] | None:
        attempt = Attempt(
            number=len(rec.attempts) + 1,
            request=request_summary(req),
            task_id=task_id,
            reattached=True,
        )
        rec.attempts.append(attempt)
        async with self._slots.slot(sid):
            rec.state = "submitted"
            self._emit_step(rec, message=f"re-attached to task {task_id}")
            state = await self._wait(rec, attempt, req, task_id, attempt_id)
        if self.budget is not None:
            self.budget.add_billed(state.usage_images)
        if state.status == "SUCCEEDED":
            return await self._download(sid, rec, state, attempt_id, float(req.step.timeout))
        if state.status == "UNKNOWN":
            self._warn(f"{sid}: task {task_id} is unknown to the service (expired?); submitting")
            await self._journal_call(
                self._journal.record_abandoned, attempt_id, "unknown to the service"
            )
        return None

    async def _wait_for_other_run(
        self, sid: str, req: Request, blockers: tuple[JournalAttempt, ...], deadline: float
    ) -> None:
        """Wait until another run's attempts on this key are over: done (its result is in the
        store), finished otherwise, or their owner is gone (a pid check on this host, else
        its heartbeat). Raises StepFailed at ``deadline`` (the step's timeout)."""
        who = ", ".join(sorted({f"pid {a.owner_pid} on {a.owner_host}" for a in blockers}))
        self._warn(f"{sid}: another run ({who}) is working on this step; waiting for it")
        ids = [a.id for a in blockers]
        while True:
            if not req.forced:
                entry = await asyncio.to_thread(self._journal.lookup_done, req.key)
                if entry is not None:
                    return
            current = await asyncio.to_thread(lambda: [self._journal.get(i) for i in ids])
            if any(a.state == "done" for a in current):
                return
            live = [
                a for a in current if not a.finished and await asyncio.to_thread(self._worked_on, a)
            ]
            if not live:
                if any(not a.finished for a in current):
                    self._warn(f"{sid}: the other run ({who}) is gone; taking over this step")
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFailed(
                    ErrorInfo(
                        "Busy",
                        f"another run ({who}) was still working on this step at its timeout "
                        f"({req.step.timeout:g} s); once it finishes, its result is in the "
                        "cache: run again to use it",
                    )
                )
            await self._sleep(min(WAIT_POLL_S, left))


#: How often a run waiting on another run's step looks at the journal.
WAIT_POLL_S = 0.5
