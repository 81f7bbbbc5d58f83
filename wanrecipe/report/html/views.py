"""What the report pages show, as plain data (filled in by ``model``, read by the templates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .thumbs import Thumb


@dataclass
class ImageView:
    label: str
    origin: str  # where it came from, as text
    href: str | None = None  # relative to the page; None when there is no file to open
    thumb: Thumb | None = None
    step: str | None = None  # the step that made it, for an anchor link
    fidelity: str | None = None  # real | approximate | placeholder | unlabelled | None
    engine: str | None = None
    note: str | None = None
    width: int = 0
    height: int = 0
    path: Path | None = None  # the file itself (for diffs), not shown


@dataclass
class AttemptView:
    number: int
    task_id: str | None
    status: str | None
    submit_time: str | None
    scheduled_time: str | None
    end_time: str | None
    submitted_at: float | None
    noticed_at: float | None
    queries: int
    reattached: bool
    usage_images: int
    error: dict[str, Any] | None


@dataclass
class StepView:
    id: str
    function: str
    state: str
    description: str = ""
    level: int = 0
    deps: tuple[str, ...] = ()
    inputs: list[ImageView] = field(default_factory=list)
    outputs: list[ImageView] = field(default_factory=list)
    prompt: str | None = None
    prompt_from_recipe: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    key: str | None = None
    cached_from: str | None = None
    images_billed: int = 0
    cost_usd: str = "0"
    error: dict[str, Any] | None = None
    failed_outputs: list[dict[str, Any]] = field(default_factory=list)
    skipped_because: str | None = None
    attempts: list[AttemptView] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def cached(self) -> bool:
        return self.state == "cached"

    @property
    def task_id(self) -> str | None:
        for attempt in reversed(self.attempts):
            if attempt.task_id:
                return attempt.task_id
        return self.cached_from

    @property
    def fidelity(self) -> str | None:
        """The least faithful label of its outputs: one placeholder marks the step."""
        found = [o.fidelity for o in self.outputs if o.fidelity]
        for label in ("placeholder", "unlabelled", "approximate", "real"):
            if label in found:
                return label
        return None


@dataclass
class RunView:
    name: str
    recipe: str
    description: str
    params: dict[str, Any]
    backend: str
    base_url: str
    status: str
    started: str
    finished: str | None
    elapsed_s: float | None
    steps: list[StepView]
    levels: list[list[str]]
    edges: list[tuple[str, str]]
    outputs: list[tuple[str, list[ImageView]]]
    warnings: list[str]
    images_billed: int
    cost_usd: str
    run_dir: Path

    @property
    def emulator(self) -> bool:
        return not self.backend.startswith("dashscope")

    @property
    def tasks(self) -> int:
        return sum(1 for s in self.steps for a in s.attempts if a.task_id)

    @property
    def images_out(self) -> int:
        return sum(len(s.outputs) for s in self.steps)

    @property
    def cache_hits(self) -> int:
        return sum(1 for s in self.steps if s.cached)

    @property
    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.steps:
            counts[s.state] = counts.get(s.state, 0) + 1
        return counts

    @property
    def placeholders(self) -> int:
        return sum(1 for s in self.steps for o in s.outputs if o.fidelity == "placeholder")
