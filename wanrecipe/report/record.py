"""The run record: what happened in a run, step by step, as data.

The executor fills it in as it goes; ``run.json`` in the run directory is its JSON form. Nothing
secret goes in: requests are stored redacted (signed URL query strings, data URI payloads, keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from .. import wire
from .files import write_text_atomic

StepState = Literal[
    "waiting",
    "submitted",
    "running",
    "downloading",
    "done",
    "failed",
    "skipped",
    "cached",
    # The task succeeded and was billed, but its image could not be downloaded: not an
    # ordinary failure. ``error.task_id`` names the task; a re-run re-attaches to it.
    "unavailable",
]
RECORD_VERSION = 1


@dataclass
class ErrorInfo:
    code: str
    message: str
    status: int = 0
    request_id: str | None = None
    task_id: str | None = None


@dataclass
class ResultFile:
    index: int
    path: str  # relative to the run directory
    sha256: str
    size: int
    width: int
    height: int
    url: str  # redacted (no query string)
    #: The emulator's engine labels (``real`` | ``approximate`` | ``placeholder``, engine
    #: name, one-line note) from the PNG's text chunks; None for a DashScope result.
    fidelity: str | None = None
    engine: str | None = None
    note: str | None = None


@dataclass
class Attempt:
    number: int
    request: dict[str, Any]  # redacted request body
    task_id: str | None = None
    request_id: str | None = None
    status: str | None = None
    # The service's own timestamps, verbatim ("YYYY-MM-DD HH:mm:ss.SSS", server clock).
    submit_time: str | None = None
    scheduled_time: str | None = None
    end_time: str | None = None
    # Our clock, seconds since the run started.
    submitted_at: float | None = None
    noticed_at: float | None = None
    queries: int = 0
    #: True when this run picked up a task an earlier run had submitted.
    reattached: bool = False
    task_metrics: dict[str, int] | None = None
    usage_images: int = 0
    error: ErrorInfo | None = None


@dataclass
class StepRecord:
    id: str
    function: str
    state: StepState = "waiting"
    attempts: list[Attempt] = field(default_factory=list)
    results: list[ResultFile] = field(default_factory=list)
    failed_outputs: list[ErrorInfo] = field(default_factory=list)
    images_billed: int = 0
    error: ErrorInfo | None = None
    skipped_because: str | None = None
    #: The content key (what the result depends on) and the seed sent.
    key: str | None = None
    seed: int | None = None
    #: For a cached step: the task that made the stored result.
    cached_from: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: What was asked, as the lock file keeps it: the rendered prompt, the parameters with
    #: the seed sent, and each input (source, sha256 or url_sha256, size, dimensions). Filled
    #: in when the step's request is prepared, so the lock needs no re-render or re-read.
    prompt: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: dict[str, dict[str, Any]] | None = None
    #: For an instance of a foreach:/matrix: step: the step as written and its values
    #: (``{"group": "styles", "index": 2, "item": "ink"}`` or ``..., "matrix": {...}}``).
    fanout: dict[str, Any] | None = None

    @property
    def cost_usd(self) -> Decimal:
        return wire.PRICE_PER_IMAGE_USD * self.images_billed


@dataclass
class RunRecord:
    recipe: str
    name: str
    params: dict[str, Any]
    backend: str
    base_url: str
    run_dir: str
    started: str  # ISO 8601, UTC
    steps: dict[str, StepRecord]
    outputs: dict[str, list[str]] = field(default_factory=dict)  # name -> paths
    finished: str | None = None
    elapsed_s: float | None = None
    status: Literal["running", "ok", "failed", "interrupted", "budget"] = "running"
    warnings: list[str] = field(default_factory=list)
    version: int = RECORD_VERSION
    #: "run"; the top of a batch directory holds a "batch" record (report/batch_record.py).
    kind: Literal["run"] = "run"
    #: Billed images of tasks that may be this run's but could not be tied to a step (a lost
    #: submit sent again under ``lost_submit=resubmit``): counted, so the cost is not low.
    unattributed_images: int = 0
    unattributed_tasks: list[str] = field(default_factory=list)

    @property
    def images_billed(self) -> int:
        return sum(s.images_billed for s in self.steps.values()) + self.unattributed_images

    @property
    def cost_usd(self) -> Decimal:
        return wire.PRICE_PER_IMAGE_USD * self.images_billed

    @property
    def failed(self) -> list[StepRecord]:
        return [s for s in self.steps.values() if s.state == "failed"]

    @property
    def unavailable(self) -> list[StepRecord]:
        """Steps whose paid result could not be downloaded (see ``StepState``)."""
        return [s for s in self.steps.values() if s.state == "unavailable"]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _plain(self)
        data["images_billed"] = self.images_billed
        data["cost_usd"] = str(self.cost_usd)
        for sid, step in self.steps.items():
            data["steps"][sid]["cost_usd"] = str(step.cost_usd)
        return data

    def write(self, path: Path) -> None:
        """Write atomically, so a crash never leaves a torn run.json.

        Indented, except that each step is one line: the C JSON encoder only writes compact
        JSON, and a run of thousands of steps must not spend seconds here."""
        data = self.to_json()
        steps = data["steps"]
        data["steps"] = _STEPS
        head = json.dumps(data, indent=2, ensure_ascii=False, default=str)
        body = ",\n".join(
            f"    {json.dumps(sid, ensure_ascii=False)}: "
            + json.dumps(step, ensure_ascii=False, default=str)
            for sid, step in steps.items()
        )
        block = "{\n" + body + "\n  }" if steps else "{}"
        text = head.replace(json.dumps(_STEPS), block, 1) + "\n"
        write_text_atomic(path, text)


_STEPS = "\x00steps\x00"


_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` without its deep copies (the record is written, not kept)."""
    kind = type(value)
    if kind in (str, int, float, bool) or value is None:
        return value
    names = _FIELDS.get(kind)
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[kind] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
