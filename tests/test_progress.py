"""Progress sinks write in batches: late by at most a timer's delay, at once for the events a
reader waits for, and everything on close."""

from __future__ import annotations

import asyncio
import io
import json

from wanrecipe.report.events import Event
from wanrecipe.report.progress import JsonLines, PlainLines


def step(i: int, state: str = "running") -> Event:
    return Event("step", float(i), step=f"s{i}", state=state, data={"images": 0})


async def test_json_lines_are_batched_and_flushed_by_a_timer() -> None:
    out = io.StringIO()
    sink = JsonLines(out, max_delay=0.05)
    sink(Event("run_started", 0.0, data={"steps": 3}))
    assert json.loads(out.getvalue())["event"] == "run_started"  # at once
    for i in range(3):
        sink(step(i))
    assert out.getvalue().count("\n") == 1  # buffered: no write per event
    await asyncio.sleep(0.3)  # the timer fires
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x.get("step") for x in lines] == [None, "s0", "s1", "s2"]
    sink(step(3, "done"))
    sink(Event("warning", 4.0, message="careful"))  # urgent: writes what waits before it
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["event"] for x in lines[-2:]] == ["step", "warning"]
    sink(step(4))
    sink.close()
    assert json.loads(out.getvalue().splitlines()[-1])["step"] == "s4"


def test_without_a_loop_every_event_is_written_at_once() -> None:
    out = io.StringIO()
    sink = PlainLines(out)
    sink(step(1, "done"))
    assert out.getvalue() == "[   1.00s] s1: done\n"
    sink(Event("run_finished", 2.0, data={"status": "ok", "images": 1, "cost_usd": "0.02"}))
    assert out.getvalue().splitlines()[-1].endswith("run ok: 1 images, $0.02 at DashScope prices")


async def test_a_full_buffer_is_written_without_waiting() -> None:
    out = io.StringIO()
    sink = JsonLines(out, max_delay=60, max_lines=10)
    for i in range(25):
        sink(step(i))
    assert out.getvalue().count("\n") == 20
    sink.close()
    assert out.getvalue().count("\n") == 25
