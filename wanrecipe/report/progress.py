"""Rendering progress events: a live table on a terminal, plain lines otherwise, or JSON lines.

Every renderer is an event sink (``Callable[[Event], None]``) with ``close()``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import IO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .. import wire
from .events import Event

_STYLE = {
    "waiting": "dim",
    "submitted": "cyan",
    "running": "blue",
    "downloading": "magenta",
    "done": "green",
    "cached": "green",
    "failed": "bold red",
    "unavailable": "bold magenta",
    "skipped": "yellow",
}


class JsonLines:
    """One JSON object per event, one per line (``--json``)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_json(), ensure_ascii=False, default=str) + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class PlainLines:
    """A line per state change, for logs and pipes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        line = _describe(event)
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        pass


@dataclass
class _Row:
    function: str
    state: str = "waiting"
    since: float = 0.0
    started: float | None = None
    ended: float | None = None
    images: int = 0
    note: str = ""


class LiveTable:
    """A live per-step table on a terminal: state, elapsed time, images and cost so far."""

    def __init__(self, console: Console, steps: dict[str, str]) -> None:
        self.console = console
        self.rows = {sid: _Row(fn) for sid, fn in steps.items()}
        self.t0 = time.monotonic()
        self.images = 0
        self.live = Live(
            self._table(),
            console=console,
            refresh_per_second=4,
            transient=False,
            get_renderable=self._table,
        )
        self.live.start()

    def __call__(self, event: Event) -> None:
        if event.kind == "step" and event.step in self.rows:
            row = self.rows[event.step]
            row.state = event.state or row.state
            if row.started is None and row.state != "waiting":
                row.started = event.t
            if row.state in ("done", "failed", "skipped", "cached", "unavailable"):
                row.ended = event.t
            row.images = int(event.data.get("images", row.images))
            self.images = int(event.data.get("run_images", self.images))
            row.note = event.message or ", ".join(event.data.get("files", [])) or row.note
        elif event.kind == "warning":
            self.console.print(f"[yellow]{escape(event.message)}[/]")

    def _table(self) -> Table:
        now = time.monotonic() - self.t0
        cost = wire.PRICE_PER_IMAGE_USD * self.images
        table = Table(
            title=f"{self.images} images, ${cost:.4f} so far", title_justify="left", expand=False
        )
        for col in ("step", "function", "state", "time", "images"):
            table.add_column(col)
        table.add_column("", no_wrap=True, overflow="ellipsis", max_width=60)
        for sid, row in self.rows.items():
            took = ""
            if row.started is not None:
                took = f"{(row.ended if row.ended is not None else now) - row.started:.1f}s"
            style = _STYLE.get(row.state, "")
            table.add_row(
                sid,
                row.function,
                f"[{style}]{row.state}[/]",
                took,
                str(row.images or ""),
                escape(row.note[:60]),
            )
        return table

    def close(self) -> None:
        self.live.update(self._table())
        self.live.stop()


def _describe(event: Event) -> str:
    t = f"[{event.t:7.2f}s]"
    if event.kind == "run_started":
        return f"{t} run started on {event.data.get('backend')} ({event.data.get('base_url')})"
    if event.kind == "warning":
        return f"{t} warning: {event.message}"
    if event.kind == "run_finished":
        d = event.data
        return f"{t} run {d.get('status')}: {d.get('images')} images, ${d.get('cost_usd')}"
    if event.kind == "step":
        extra = event.message or ", ".join(event.data.get("files", []))
        tail = f": {extra}" if extra else ""
        return f"{t} {event.step}: {event.state}{tail}"
    return ""
