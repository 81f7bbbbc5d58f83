"""Server-side limits: submission rate, concurrency (queue and reject), query rate, latency."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import aiohttp
import pytest

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.tasks import task_latency

from .emu_helpers import Api, Start, body


async def test_submissions_over_the_rate_get_429(start: Start, http: aiohttp.ClientSession):
    async with start(rps=2, executor=None) as emu:
        api = Api(http, emu)
        t0 = time.monotonic()
        answers = [await api.submit(body()) for _ in range(5)]
        spent = time.monotonic() - t0
        statuses = [s for s, _ in answers]
        # A burst of 2, then 2 tokens per second: what the time spent allows, never more
        # (a busy machine only makes this more generous, never wrong).
        allowed = 2 + int(spent * 2)
        assert statuses[:2] == [200, 200]
        assert statuses.count(200) <= allowed, (statuses, spent)
        if allowed < 5:
            assert 429 in statuses
        refused = [a for s, a in answers if s == 429]
        assert {a["code"] for a in refused} <= {"Throttling.RateQuota"}
        assert all(
            a["message"] == "Requests rate limit exceeded, please try again later." for a in refused
        )
        await asyncio.sleep(0.5)  # at least one token back
        status, _ = await api.submit(body())
        assert status == 200
        stats = await api.stats()
    subs = stats["submissions"]
    accepted = statuses.count(200) + 1
    assert subs["accepted"] == accepted
    assert subs["refused_by_code"] == ({"Throttling.RateQuota": len(refused)} if refused else {})
    assert stats["throttles"] == ({"submit_rate": len(refused)} if refused else {})
    # In any 1 s window: the burst of 2 plus at most 2 refilled tokens.
    assert 2 <= subs["peak_accepted_1s"] <= min(accepted, 4)
    assert subs["peak_attempts_1s"] <= 6
    assert len(subs["accepted_times"]) == accepted


@pytest.mark.slow
async def test_a_client_pacing_at_the_rate_is_never_refused(
    start: Start, http: aiohttp.ClientSession
):
    async with start(rps=2) as emu:
        api = Api(http, emu)
        statuses = []
        for _ in range(5):
            statuses.append((await api.submit(body()))[0])
            await asyncio.sleep(0.5)
        assert statuses == [200] * 5
        assert (await api.stats())["submissions"]["peak_accepted_1s"] <= 3


async def test_over_concurrency_queues(start: Start, http: aiohttp.ClientSession):
    latency = 1.0
    async with start(concurrency=2, latency=latency) as emu:
        api = Api(http, emu)
        ids = [await api.task_id(body()) for _ in range(4)]
        first = [(await api.query(i))[1]["output"]["task_status"] for i in ids]
        done = [await api.wait(i) for i in ids]
        stats = await api.stats()
    assert all(d["output"]["task_status"] == "SUCCEEDED" for d in done)
    assert stats["submissions"]["accepted"] == 4, "queued, not refused"
    assert stats["tasks"]["peak_running"] == 2
    # First come, first served: a later task is never further along than an earlier one.
    rank = {"PENDING": 0, "RUNNING": 1, "SUCCEEDED": 2}
    assert [rank[s] for s in first] == sorted((rank[s] for s in first), reverse=True), first
    assert first.count("RUNNING") <= 2
    # The service's own timestamps, in order: slots go in submission order, a queued task
    # gets one only when an earlier task has ended, and latency counts from the slot.
    times = [
        (_t(d["output"]["submit_time"]), _t(d["output"]["scheduled_time"]),
         _t(d["output"]["end_time"]))
        for d in done
    ]  # fmt: skip
    scheduled = [t[1] for t in times]
    assert scheduled == sorted(scheduled)
    for i, (_, slot, _) in enumerate(times):
        running = [j for j, (_, s, e) in enumerate(times) if j != i and s <= slot < e]
        assert len(running) <= 1, f"task {i} got a slot while {running} ran: {times}"
    for submitted, slot, end in times:
        assert slot >= submitted
        assert end - slot >= latency - 0.01


def _t(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


async def test_over_concurrency_rejects(start: Start, http: aiohttp.ClientSession):
    async with start(concurrency=2, over_concurrency="reject", latency=0.3) as emu:
        api = Api(http, emu)
        ids = [await api.task_id(body()) for _ in range(2)]
        status, answer = await api.submit(body())
        assert (status, answer["code"]) == (429, "Throttling.AllocationQuota")
        for i in ids:
            await api.wait(i)
        status, _ = await api.submit(body())
        assert status == 200
        stats = await api.stats()
    assert stats["throttles"] == {"concurrency": 1}
    assert stats["submissions"]["refused_by_code"] == {"Throttling.AllocationQuota": 1}


async def test_queries_over_20_per_second_get_429(start: Start, http: aiohttp.ClientSession):
    async with start(query_qps=20) as emu:
        api = Api(http, emu)
        task_id = await api.task_id(body())
        t0 = time.monotonic()
        answers = await asyncio.gather(*(api.query(task_id) for _ in range(100)))
        spent = time.monotonic() - t0
        stats = await api.stats()
    statuses = [s for s, _ in answers]
    ok = statuses.count(200)
    # 20 stored, then 20 per second: at least the stored ones pass, never more than the time
    # spent allows, and everything else is refused with the service's code.
    assert 20 <= ok <= 20 + int(spent * 20) + 1, (ok, spent)
    assert set(statuses) <= {200, 429}
    assert {a["code"] for s, a in answers if s == 429} <= {"Throttling.RateQuota"}
    assert stats["throttles"].get("query_rate", 0) == statuses.count(429)
    assert stats["queries"] == ok
    if spent < 3.5:  # 100 queries cannot all pass in that time
        assert statuses.count(429) >= 1


async def test_query_limit_can_be_disabled(start: Start, http: aiohttp.ClientSession):
    async with start(query_qps=0) as emu:
        api = Api(http, emu)
        task_id = await api.task_id(body())
        statuses = {(await api.query(task_id))[0] for _ in range(100)}
    assert statuses == {200}


async def test_fixed_latency(start: Start, http: aiohttp.ClientSession):
    async with start(latency=0.5) as emu:
        api = Api(http, emu)
        t0 = time.monotonic()
        done = await api.wait(await api.task_id(body()))
        assert time.monotonic() - t0 >= 0.5
    out = done["output"]
    assert _t(out["end_time"]) - _t(out["scheduled_time"]) >= 0.49


def test_latency_draws():
    assert task_latency(EmulatorConfig(latency="fast"), 0) == 0.0
    assert task_latency(EmulatorConfig(latency=3.5), 7) == 3.5
    realistic = EmulatorConfig(latency="realistic", seed=4)
    draws = [task_latency(realistic, i) for i in range(50)]
    assert all(5.0 <= d <= 15.0 for d in draws)
    assert len(set(draws)) == 50
    assert draws == [
        task_latency(EmulatorConfig(latency="realistic", seed=4), i) for i in range(50)
    ]
    assert draws != [
        task_latency(EmulatorConfig(latency="realistic", seed=5), i) for i in range(50)
    ]
