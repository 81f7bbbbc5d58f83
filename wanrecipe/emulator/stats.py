"""Counters served at ``GET /emulator/stats`` for tests and benchmarks."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .quota import WindowPeak


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    submits_accepted: int = 0
    #: refused submissions by error code (auth, validation, throttling, injected faults)
    submits_refused: Counter[str] = field(default_factory=Counter)
    #: tasks that reached each status (a task counts once per status it passed through)
    tasks: Counter[str] = field(default_factory=Counter)
    tasks_expired: int = 0
    running: int = 0
    peak_running: int = 0
    billed_images: int = 0
    failed_outputs: int = 0
    throttles: Counter[str] = field(default_factory=Counter)
    queries: int = 0
    lists: int = 0
    cancels: int = 0
    downloads: int = 0
    uploads: int = 0
    #: every POST to the submit route, accepted or not
    submit_attempts: WindowPeak = field(default_factory=WindowPeak)
    #: accepted submissions only
    submit_accepts: WindowPeak = field(default_factory=WindowPeak)

    def task_started(self) -> None:
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)

    def snapshot(self, faults: Counter[str] | None, live: Counter[str]) -> dict[str, Any]:
        """A JSON-able copy. ``live``: how many tasks are in each status right now;
        ``faults``: those injected (None for an account's view: faults are the server's)."""
        t0 = self.started
        body: dict[str, Any] = {
            "uptime_s": round(time.monotonic() - t0, 3),
            "submissions": {
                "accepted": self.submits_accepted,
                "refused": sum(self.submits_refused.values()),
                "refused_by_code": dict(self.submits_refused),
                "attempts": len(self.submit_attempts.times),
                "peak_attempts_1s": self.submit_attempts.peak,
                "peak_accepted_1s": self.submit_accepts.peak,
                # seconds since server start, for checks of the client's pacing
                "accepted_times": [round(t - t0, 4) for t in self.submit_accepts.times],
                "attempt_times": [round(t - t0, 4) for t in self.submit_attempts.times],
            },
            "tasks": {
                "by_status": dict(live),
                "reached": dict(self.tasks),
                "expired": self.tasks_expired,
                "running": self.running,
                "peak_running": self.peak_running,
            },
            "billed_images": self.billed_images,
            "failed_outputs": self.failed_outputs,
            "throttles": dict(self.throttles),
            "queries": self.queries,
            "lists": self.lists,
            "cancels": self.cancels,
            "downloads": self.downloads,
            "uploads": self.uploads,
        }
        if faults is not None:
            body["faults"] = dict(faults)
        return body
