"""Progress of a batch: one live bar on a terminal, one line per finished row otherwise.

A table of 600 steps is not progress: the bar shows rows done / failed / left, tasks running,
cost so far and an ETA from the quota and the task durations (learned on earlier runs, then
observed in this one). ``--json`` uses the ordinary JSON lines, whose events carry ``row``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.text import Text

from .. import wire
from .events import Event

_ACTIVE = frozenset({"submitted", "running", "downloading"})
_ENDED = frozenset({"done", "cached", "failed", "skipped"})


class BatchState:
    """What the bar and the lines show, folded from events."""

    def __init__(
        self,
        rows: int,
        functions: Mapping[str, str],
        *,
        expected: Mapping[str, float],
        concurrency: int,
        submit_rps: float,
    ) -> None:
        #: ``row/step`` -> function, for every task of the batch.
        self.functions = dict(functions)
        self.rows = rows
        self.expected = dict(expected)
        self.concurrency = max(1, concurrency)
        self.submit_rps = submit_rps
        self.ok = self.failed = self.other = 0
        self.images = 0
        self.active: dict[str, float] = {}  # task -> when it was submitted
        self.ended: set[str] = set()
        self._observed: dict[str, list[float]] = {}

    @property
    def left(self) -> int:
        return self.rows - self.ok - self.failed - self.other

    @property
    def cost_usd(self) -> str:
        return f"{wire.PRICE_PER_IMAGE_USD * self.images:.4f}"

    def fold(self, event: Event) -> None:
        if event.kind == "step" and event.step is not None:
            task = f"{event.data.get('row', '')}/{event.step}"
            self.images = int(event.data.get("run_images", self.images))
            if event.state in _ACTIVE:
                self.active.setdefault(task, event.t)
            elif event.state in _ENDED:
                began = self.active.pop(task, None)
                self.ended.add(task)
                if event.state == "done" and began is not None:
                    fn = self.functions.get(task, "")
                    self._observed.setdefault(fn, []).append(event.t - began)
        elif event.kind == "row":
            if event.state == "ok":
                self.ok += 1
            elif event.state == "failed":
                self.failed += 1
            else:
                self.other += 1

    def duration(self, function: str) -> float:
        seen = self._observed.get(function)
        if seen:
            return sum(seen[-20:]) / len(seen[-20:])
        return self.expected.get(function, wire.TYPICAL_TASK_SECONDS)

    def eta_s(self) -> float:
        """Seconds left if the quota stays full: the task time left spread over the slots,
        never faster than the submit rate allows."""
        waiting = [t for t in self.functions if t not in self.ended]
        if not waiting:
            return 0.0
        work = sum(self.duration(self.functions[t]) for t in waiting)
        return max(work / self.concurrency, len(waiting) / self.submit_rps)


def _clock(seconds: float) -> str:
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class BatchBar:
    """The live bar (rich) for a terminal."""

    def __init__(self, console: Console, state: BatchState, *, paid: bool) -> None:
        self.console = console
        self.state = state
        self.paid = paid
        self.t0 = time.monotonic()
        self.live = Live(
            self._render(), console=console, refresh_per_second=4, get_renderable=self._render
        )
        self.live.start()

    def __call__(self, event: Event) -> None:
        self.state.fold(event)
        if event.kind == "warning":
            self.console.print(f"[yellow]{escape(event.message)}[/]")
        elif event.kind == "row" and event.state == "failed":
            self.console.print(
                f"[bold red]row {escape(str(event.data.get('row')))} failed[/]: "
                f"{escape(event.message)}"
            )

    def _render(self) -> Group:
        s = self.state
        done = s.rows - s.left
        cost = "spent" if self.paid else "at DashScope prices"
        line = Text.assemble(
            (f" {done}/{s.rows} rows", "bold"),
            "  ",
            (f"ok {s.ok}", "green"),
            "  ",
            (f"failed {s.failed}", "red" if s.failed else "dim"),
            f"  left {s.left}  |  running {len(s.active)}  |  ${s.cost_usd} {cost}"
            f"  |  {_clock(time.monotonic() - self.t0)} elapsed, ETA {_clock(s.eta_s())}",
        )
        return Group(ProgressBar(total=max(1, s.rows), completed=done, width=60), line)

    def close(self) -> None:
        self.live.update(self._render())
        self.live.stop()


class BatchLines:
    """For logs and pipes: a line per finished row (not per step), warnings, the end."""

    def __init__(self, stream: IO[str], state: BatchState) -> None:
        self.stream = stream
        self.state = state

    def __call__(self, event: Event) -> None:
        self.state.fold(event)
        line = self._describe(event)
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _describe(self, event: Event) -> str:
        t = f"[{event.t:7.2f}s]"
        s = self.state
        if event.kind == "run_started":
            d = event.data
            return (
                f"{t} batch started on {d.get('backend')}: {d.get('rows')} rows, "
                f"{d.get('steps')} steps"
            )
        if event.kind == "warning":
            return f"{t} warning: {event.message}"
        if event.kind == "row":
            d = event.data
            tail = f": {event.message}" if event.message else ""
            return (
                f"{t} row {d.get('row')}: {event.state}{tail} ({d.get('images')} images); "
                f"{s.rows - s.left}/{s.rows} rows, {s.failed} failed, ${s.cost_usd} so far, "
                f"ETA {_clock(s.eta_s())}"
            )
        if event.kind == "run_finished":
            d = event.data
            return (
                f"{t} batch {d.get('status')}: {d.get('rows_ok')}/{d.get('rows')} rows ok, "
                f"{d.get('images')} images, ${d.get('cost_usd')}"
            )
        return ""

    def close(self) -> None:
        pass
