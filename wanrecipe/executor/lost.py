"""Finding the task of a submit that never answered, in the account's task list.

A submit whose connection dropped after the request went out may have created a task (and
billed it). The task list shows the account's tasks with their creation times (``gmt_create``,
epoch ms; the ``start_time``/``end_time`` filters are in the service's own zone, UTC+8). It
does not show the request (no function, prompt, seed or inputs), so a task is matched on what
the list and a query of it can tell: created inside the submit's time window, of our model,
unknown to the journal and not claimed before, and asking for as many images as we did
(``task_metrics.TOTAL`` when the query shows it).

The caller holds the run's submit lock from before the submit until this lookup is over, so no
other submit of this run can put a second unknown task into the window. A task list may lag
behind the submit: an empty answer is asked again a few times with backoff before it counts.

The verdict is one of three: found (exactly one task), none (the list, read, shows no task in
the window: the submit created nothing and may be sent again), or unsure (several candidates,
or the list cannot be read): the caller must not guess.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from .. import wire
from ..errors import BackendError
from ..redact import redact_text
from ..store import JournalOps as Journal

#: Clock skew allowed between us and the service, either way (seconds).
SKEW_S = 5.0
#: For an intent whose submit's end is unknown (a crash): how long the submit may have taken.
AFTER_S = 120.0
#: Waits before asking the list again when it shows nothing yet (it may lag the submit).
LIST_RETRY_DELAYS: tuple[float, ...] = (0.3, 1.0, 2.0)


@dataclass(frozen=True)
class Lookup:
    verdict: Literal["found", "none", "unsure"]
    task_id: str | None = None
    candidates: tuple[str, ...] = ()
    reason: str = ""


class LostTaskFinder:
    def __init__(
        self, client: Any, journal: Journal, *, utc_offset_hours: float,
        warn: Callable[[str], None],
        retry_delays: Sequence[float] = LIST_RETRY_DELAYS,
    ) -> None:  # fmt: skip
        self.client = client
        self.journal = journal
        self.zone = timezone(timedelta(hours=utc_offset_hours))
        self.warn = warn
        self.retry_delays = tuple(retry_delays)
        self._claimed: set[str] = set()  # found earlier in this run: never twice

    async def find(self, created_at: float, until: float | None = None, n: int = 1) -> Lookup:
        """The task a submit sent between ``created_at`` and ``until`` (epoch s; unknown end:
        up to ``AFTER_S`` later) created, asking for ``n`` images. ``created_at`` is when the
        request was sent (live) or the intent recorded (after a crash)."""
        lo = created_at - SKEW_S
        hi = (until if until is not None else created_at + AFTER_S) + SKEW_S
        last: Lookup = Lookup("unsure", reason="the task list was not read")
        # The list may lag a submit by a moment: an empty answer is asked again, but only
        # while the submit is that recent (an intent left by a crash has had its time).
        fresh = time.time() - created_at < sum(self.retry_delays) + SKEW_S
        for delay in (0.0, *(self.retry_delays if fresh else ())):
            if delay:
                await asyncio.sleep(delay)
            last = await self._look(lo, hi, n)
            if last.verdict == "found" or (last.verdict == "unsure" and last.candidates):
                break
        if last.verdict == "found" and last.task_id is not None:
            self._claimed.add(last.task_id)
        return last

    async def _look(self, lo: float, hi: float, n: int) -> Lookup:
        since = datetime.fromtimestamp(lo - 1, self.zone).replace(tzinfo=None)
        upto = datetime.fromtimestamp(hi + 1, self.zone).replace(tzinfo=None)
        items: list[Mapping[str, Any]] = []
        try:
            for page_no in range(1, 11):  # 1000 tasks in a few seconds is more than any account
                page = await self.client.list_tasks(
                    start_time=since, end_time=upto, model_name=wire.MODEL,
                    page_no=page_no, page_size=100,
                )  # fmt: skip
                items.extend(page.tasks)
                if len(page.tasks) < 100:
                    break
        except BackendError as exc:
            reason = f"cannot read the task list: {exc.code}: {redact_text(exc.message)}"
            return Lookup("unsure", reason=reason)
        listed = [str(item["task_id"]) for item in items if item.get("task_id")]
        # Only the task list's candidates are looked up: the journal's size does not matter.
        known = await asyncio.to_thread(self.journal.known_tasks, listed)
        found = []
        for item in items:
            task_id = item.get("task_id")
            model = item.get("model_name")
            when = created_time(item, self.zone)
            if (
                task_id
                and (model is None or model == wire.MODEL)
                and task_id not in known
                and task_id not in self._claimed
                and when is not None
                and lo <= when <= hi
            ):
                found.append(str(task_id))
        if len(found) > 1:
            found = await self._same_size(found, n)
        if not found:
            return Lookup("none")
        if len(found) == 1:
            return Lookup("found", found[0], tuple(found))
        return Lookup(
            "unsure",
            candidates=tuple(found),
            reason=f"{len(found)} unknown tasks at that time ({', '.join(found)})",
        )

    async def _same_size(self, found: list[str], n: int) -> list[str]:
        """Drop candidates whose query shows another number of images than we asked for."""
        kept = []
        for task_id in found:
            try:
                state = await self.client.query(task_id)
            except BackendError:
                kept.append(task_id)  # cannot tell: keep it a candidate
                continue
            total = state.task_metrics.get("TOTAL") if state.task_metrics else None
            if total is None or int(total) == n:
                kept.append(task_id)
        return kept


def created_time(item: Mapping[str, Any], zone: timezone) -> float | None:
    """When a listed task was created, as epoch seconds: ``gmt_create`` (epoch ms, as the
    SDK's list shows it) or ``submit_time`` (the service's clock and format)."""
    value = item.get("gmt_create")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000.0
    submitted = wire.parse_time(item.get("submit_time"))
    return submitted.replace(tzinfo=zone).timestamp() if submitted is not None else None
