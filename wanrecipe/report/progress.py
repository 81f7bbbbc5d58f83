"""Rendering progress events: a live table on a terminal, plain lines otherwise, or JSON lines.

Every renderer is an event sink (``Callable[[Event], None]``) with ``close()``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from .. import wire
from .events import Event

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# rich is imported by the live table alone: --json and plain lines (a pipe, a log, a CI job)
# start without it.

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


class _BufferedLines:
    """Lines written in batches: at most ``max_delay`` seconds late (a timer on the running
    event loop), at once for the events a reader waits for (start, warnings, the end), and
    on :meth:`close` (the CLI closes its sink on every way out, Ctrl-C included). One write
    and one flush per batch instead of one per event."""

    #: Events written at once.
    urgent: frozenset[str] = frozenset({"run_started", "warning", "run_finished"})

    def __init__(self, stream: IO[str], *, max_delay: float = 0.1, max_lines: int = 512) -> None:
        self.stream = stream
        self.max_delay = max_delay
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def _line(self, event: Event) -> str:
        raise NotImplementedError

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if not line:
            return
        self._lines.append(line)
        if event.kind in self.urgent or len(self._lines) >= self.max_lines:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to wake us: write now
                self.flush()
                return
            self._timer = loop.call_later(self.max_delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            self.stream.write("\n".join(self._lines) + "\n")
            self._lines.clear()
            self.stream.flush()

    def close(self) -> None:
        self.flush()


class JsonLines(_BufferedLines):
    """One JSON object per event, one per line (``--json``)."""

    def _line(self, event: Event) -> str:
        return json.dumps(event.to_json(), ensure_ascii=False, default=str)


class PlainLines(_BufferedLines):
    """A line per state change, for logs and pipes."""

    def _line(self, event: Event) -> str:
        return _describe(event)


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
        from rich.live import Live

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
            from rich.markup import escape

            self.console.print(f"[yellow]{escape(event.message)}[/]")

    def _table(self) -> Table:
        from rich.markup import escape
        from rich.table import Table

        now = time.monotonic() - self.t0
        cost = wire.PRICE_PER_IMAGE_USD * self.images
        table = Table(
            title=f"{self.images} images, ${cost:.4f} at DashScope prices so far",
            title_justify="left",
            expand=False,
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
        cost = f"${d.get('cost_usd')} at DashScope prices"
        return f"{t} run {d.get('status')}: {d.get('images')} images, {cost}"
    if event.kind == "step":
        extra = event.message or ", ".join(event.data.get("files", []))
        tail = f": {extra}" if extra else ""
        return f"{t} {event.step}: {event.state}{tail}"
    return ""
