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
        answers = [await api.submit(body()) for _ in range(5)]
        assert [s for s, _ in answers] == [200, 200, 429, 429, 429]
        assert {a["code"] for s, a in answers if s == 429} == {"Throttling.RateQuota"}
        assert answers[2][1]["message"] == "Requests rate limit exceeded, please try again later."
        await asyncio.sleep(0.5)
        status, _ = await api.submit(body())
        assert status == 200
        stats = await api.stats()
    subs = stats["submissions"]
    assert subs["accepted"] == 3
    assert subs["refused_by_code"] == {"Throttling.RateQuota": 3}
    assert stats["throttles"] == {"submit_rate": 3}
    assert subs["peak_accepted_1s"] == 3  # two back to back, one more 0.5 s later
    assert subs["peak_attempts_1s"] == 6
    assert len(subs["accepted_times"]) == 3


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
    async with start(concurrency=2, latency=0.4) as emu:
        api = Api(http, emu)
        ids = [await api.task_id(body()) for _ in range(4)]
        first = [(await api.query(i))[1]["output"]["task_status"] for i in ids]
        assert first == ["RUNNING", "RUNNING", "PENDING", "PENDING"]
        done = [await api.wait(i) for i in ids]
        stats = await api.stats()
    assert all(d["output"]["task_status"] == "SUCCEEDED" for d in done)
    assert stats["tasks"]["peak_running"] == 2
    # The latency clock starts when a task gets its slot.
    last = done[-1]["output"]
    run = _t(last["end_time"]) - _t(last["scheduled_time"])
    wait = _t(last["scheduled_time"]) - _t(last["submit_time"])
    assert 0.39 <= run < 1.0
    assert wait >= 0.35


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
        statuses = [(await api.query(task_id))[0] for _ in range(30)]
        assert statuses.count(200) in (20, 21)  # 20 stored, maybe one refilled meanwhile
        assert statuses[-1] == 429
        _, answer = await api.query(task_id)
        assert answer["code"] == "Throttling.RateQuota"
        stats = await api.stats()
    assert stats["throttles"]["query_rate"] >= 9
    assert stats["queries"] == statuses.count(200)


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
        await api.wait(await api.task_id(body()))
        assert 0.5 <= time.monotonic() - t0 < 2.0


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
