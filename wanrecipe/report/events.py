"""Progress events: the executor emits them, the CLI renders them (live view, lines or JSON)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["run_started", "step", "row", "warning", "run_finished"]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    t: float  # seconds since the run started
    step: str | None = None
    state: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.kind, "t": round(self.t, 3)}
        if self.step is not None:
            out["step"] = self.step
        if self.state is not None:
            out["state"] = self.state
        if self.message:
            out["message"] = self.message
        out.update(self.data)
        return out


EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """The default sink."""
