"""Finding the task of a submit that never answered, in the account's task list.

A submit whose connection dropped after the request went out may have created a task (and
billed it). The task list shows the account's tasks with their creation times; the one task
around the submit's time that no attempt in the journal knows is ours. One submit is in flight
at a time per run, so a crash leaves at most one such intent. When another program submitted
on the same account in the same seconds, the list cannot tell: the caller is told so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import wire
from ..errors import BackendError
from ..redact import redact_text
from ..store import Journal

#: How far around the intent's time a task may have been created (the submit's own timeout).
BEFORE_S, AFTER_S = 5.0, 120.0


class LostTaskFinder:
    def __init__(
        self, client: Any, journal: Journal, *, utc_offset_hours: float,
        warn: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.client = client
        self.journal = journal
        self.zone = timezone(timedelta(hours=utc_offset_hours))
        self.warn = warn
        self._lock = asyncio.Lock()
        self._claimed: set[str] = set()  # found earlier in this run: never twice

    async def find(self, created_at: float) -> str | None:
        """The one unknown task created around ``created_at`` (epoch s), if exactly one."""
        lo, hi = created_at - BEFORE_S, created_at + AFTER_S
        since = datetime.fromtimestamp(lo - 60, self.zone).replace(tzinfo=None)
        async with self._lock:
            try:
                page = await self.client.list_tasks(start_time=since, page_size=100)
            except BackendError as exc:
                self.warn(f"cannot read the task list: {exc.code}: {redact_text(exc.message)}")
                return None
            known = await asyncio.to_thread(
                lambda: {a.task_id for a in self.journal.attempts() if a.task_id}
            )
            found = []
            for item in page.tasks:
                task_id = item.get("task_id")
                when = created_time(item, self.zone)
                if (
                    task_id
                    and task_id not in known
                    and task_id not in self._claimed
                    and when is not None
                    and lo <= when <= hi
                ):
                    found.append(str(task_id))
            if len(found) > 1:
                self.warn(
                    f"{len(found)} unknown tasks in the task list at that time; "
                    "cannot tell which is ours"
                )
            if len(found) != 1:
                return None
            self._claimed.add(found[0])
            return found[0]


def created_time(item: Mapping[str, Any], zone: timezone) -> float | None:
    """When a listed task was created, as epoch seconds: ``gmt_create`` (epoch ms, as the
    SDK's list shows it) or ``submit_time`` (the service's clock and format)."""
    for name in ("gmt_create", "start_time"):
        value = item.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value / 1000.0
    submitted = wire.parse_time(item.get("submit_time"))
    return submitted.replace(tzinfo=zone).timestamp() if submitted is not None else None
