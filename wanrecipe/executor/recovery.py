"""Recovery: pick up what an earlier run left in flight for a step (re-attach to its task,
find a lost submit's task in the task list) and wait for another live run working on it."""

from __future__ import annotations

import asyncio
import time

from ..report.record import Attempt, StepRecord
from ..store import Attempt as JournalAttempt
from .inputs import StepImage
from .stepbase import Request, is_mine, request_summary
from .submission import Submission


class Recovery(Submission):
    async def _resume(self, sid: str, rec: StepRecord, req: Request) -> list[StepImage] | None:
        """Pick up what an earlier run left in flight for this key, if anything."""
        flights = await asyncio.to_thread(self._journal.in_flight, req.key)
        for old in sorted(flights, key=lambda a: a.created_at):
            if old.owner_pid and old.owner_alive() and not is_mine(old):
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
        if state.status == "SUCCEEDED":
            return await self._download(sid, rec, state, attempt_id)
        if state.status == "UNKNOWN":
            self._warn(f"{sid}: task {task_id} is unknown to the service (expired?); submitting")
            await self._journal_call(
                self._journal.record_abandoned, attempt_id, "unknown to the service"
            )
        return None

    async def _wait_for_other_run(
        self, sid: str, rec: StepRecord, req: Request, old: JournalAttempt
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
