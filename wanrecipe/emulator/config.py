"""Every knob of the emulator, in one frozen dataclass, plus the parsers the CLI uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .. import durations, wire
from ..errors import UsageError
from .engines import DEFAULT_MAX_OUTPUT_PIXELS

Latency = Literal["fast", "realistic"] | float
OverConcurrency = Literal["queue", "reject"]
ValidateImages = Literal["submit", "task"]
ExecutorKind = Literal["process", "thread"]


def parse_duration(text: str) -> float:
    """``24h``, ``90s``, ``0.5s``, ``500ms``, ``10m``, ``1d``, ``1h30m`` or bare seconds ->
    seconds (the recipes' syntax, see ``wanrecipe.durations``)."""
    try:
        return durations.parse_duration(text, allow_zero=True, allow_days=True)
    except ValueError:
        raise UsageError(
            f"{text!r} is not a duration (examples: 24h, 10m, 90s, 0.5s, 500ms)"
        ) from None


def parse_latency(text: str) -> Latency:
    """``fast``, ``realistic`` or a fixed duration in seconds (``3``, ``2.5s``)."""
    word = text.strip().lower()
    if word == "fast":
        return "fast"
    if word == "realistic":
        return "realistic"
    try:
        return parse_duration(word)
    except UsageError:
        raise UsageError(
            f"{text!r} is not a latency (use fast, realistic or seconds such as 3 or 2.5s)"
        ) from None


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves. Defaults mirror the real service's account quota (spec §5)."""

    host: str = "127.0.0.1"
    port: int = 0
    latency: Latency = "fast"
    #: Accepted submissions per second (token bucket, see ``rps_burst``); 0 = unlimited.
    rps: float = wire.SUBMIT_RPS
    #: Bucket size of the submission limiter: how many submits may arrive back to back.
    rps_burst: int = 2
    #: Tasks RUNNING at once; 0 = unlimited.
    concurrency: int = wire.CONCURRENCY
    over_concurrency: OverConcurrency = "queue"
    #: Task queries (GET /tasks/{id}) per second; 0 = unlimited (for benchmarks).
    query_qps: float = wire.QUERY_QPS
    faults: str = ""
    fault_seed: int = 0
    #: When set, only this bearer key is accepted; otherwise any non-empty key is.
    api_key: str | None = None
    #: Results and uploads go here when set; in memory otherwise.
    data_dir: Path | None = None
    task_ttl: float = float(wire.TASK_TTL_SECONDS)
    url_ttl: float = float(wire.URL_TTL_SECONDS)
    #: Where image problems (download, format, size, mask size, output cap) are reported:
    #: ``task`` = the task ends FAILED (default), ``submit`` = the submit answers 4xx.
    validate_images: ValidateImages = "task"
    executor: ExecutorKind = "process"
    workers: int = 2
    badge: bool = False
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS
    #: Seconds after which the engines' heavy steps take their fast path (None = theirs).
    engine_time_budget: float | None = None
    #: Seed of the draws that are not faults (realistic latency, task seeds when omitted).
    seed: int = 0
    #: Hours east of UTC for submit_time/scheduled_time/end_time (Beijing, UTC+8, by default).
    utc_offset_hours: float = 8.0
    #: Tolerance of the submission limiter for network jitter, seconds.
    rate_grace: float = 0.05
    #: Wall clock (epoch seconds) for timestamps and expiry; tests inject a fake one.
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.latency, float | int) and self.latency < 0:
            problems.append("latency must be >= 0")
        if self.rps < 0 or self.query_qps < 0:
            problems.append("rates must be >= 0 (0 = unlimited)")
        if self.rps_burst < 1:
            problems.append("rps_burst must be >= 1")
        if self.concurrency < 0:
            problems.append("concurrency must be >= 0 (0 = unlimited)")
        if self.workers < 1:
            problems.append("workers must be >= 1")
        if self.task_ttl <= 0 or self.url_ttl <= 0:
            problems.append("TTLs must be > 0")
        if self.over_concurrency not in ("queue", "reject"):
            problems.append("over_concurrency must be queue or reject")
        if self.validate_images not in ("submit", "task"):
            problems.append("validate_images must be submit or task")
        if self.executor not in ("process", "thread"):
            problems.append("executor must be process or thread")
        if problems:
            raise UsageError("invalid emulator settings: " + "; ".join(problems))
