"""The batch bar and lines: rows done / failed / left, running tasks, cost, ETA."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from wanrecipe.report.batch_progress import BatchBar, BatchLines, BatchState
from wanrecipe.report.events import Event

FUNCTIONS = {f"r{i}/{s}": fn for i in range(1, 5) for s, fn in (("a", "colorization"),
                                                                  ("b", "expand"))}  # fmt: skip


def state(**kw) -> BatchState:
    kw.setdefault("expected", {"colorization": 8.0, "expand": 12.0})
    return BatchState(4, FUNCTIONS, concurrency=2, submit_rps=2.0, **kw)


def step(t: float, row: str, sid: str, st: str, images: int = 0) -> Event:
    return Event("step", t, step=sid, state=st, data={"row": row, "run_images": images})


def test_eta_spreads_the_task_time_left_over_the_slots():
    s = state()
    assert s.eta_s() == pytest.approx(4 * (8 + 12) / 2)
    s.fold(step(0.0, "r1", "a", "submitted"))
    assert len(s.active) == 1
    s.fold(step(4.0, "r1", "a", "done", images=1))
    # One colorization done in 4 s: the observed duration replaces the learned 8 s.
    assert s.duration("colorization") == pytest.approx(4.0)
    assert s.eta_s() == pytest.approx((3 * 4 + 4 * 12) / 2)
    assert s.cost_usd == "0.0201"


def test_eta_is_never_faster_than_the_submit_rate():
    s = BatchState(4, FUNCTIONS, expected={}, concurrency=50, submit_rps=0.5)
    assert s.expected == {}
    assert s.eta_s() == pytest.approx(max(8 * 10.0 / 50, 8 / 0.5))


def test_rows_are_counted_from_row_events():
    s = state()
    s.fold(Event("row", 1.0, state="ok", data={"row": "r1"}))
    s.fold(Event("row", 2.0, state="failed", data={"row": "r2"}))
    assert (s.ok, s.failed, s.left) == (1, 1, 2)


def test_lines_say_one_line_per_row_not_per_step():
    out = io.StringIO()
    lines = BatchLines(out, state())
    lines(step(0.0, "r1", "a", "submitted"))
    lines(step(1.0, "r1", "a", "done"))
    lines(Event("row", 2.0, state="ok", data={"row": "r1", "images": 2}))
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "row r1: ok (2 images); 1/4 rows, 0 failed" in text


def test_the_bar_shows_rows_running_cost_and_eta():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    bar = BatchBar(console, state(), paid=False)
    bar(step(0.0, "r1", "a", "submitted"))
    bar(Event("row", 2.0, state="failed", message="a: InvalidParameter", data={"row": "r2"}))
    bar.close()
    text = out.getvalue()
    assert "1/4 rows" in text and "failed 1" in text and "running 1" in text
    assert "at DashScope prices" in text and "ETA" in text
    assert "row r2 failed" in text
