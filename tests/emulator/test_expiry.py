"""Expiry of task ids and result URLs: with an injected clock, and for real with short TTLs."""

from __future__ import annotations

import asyncio

import aiohttp

from .emu_helpers import Api, Start, body


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_task_ids_and_urls_expire_on_the_calendar(start: Start, http: aiohttp.ClientSession):
    clock = FakeClock()
    async with start(clock=clock, task_ttl=24 * 3600, url_ttl=3600) as emu:
        api = Api(http, emu)
        task_id = await api.task_id(body())
        done = await api.wait(task_id)
        url = done["output"]["results"][0]["url"]
        assert done["output"]["submit_time"] == "2027-01-15 16:00:00.000"  # UTC+8

        clock.now += 3599
        async with http.get(url) as r:
            assert r.status == 200
        clock.now += 2
        async with http.get(url) as r:
            assert r.status == 403
            assert (await r.json())["message"] == "Request has expired."
        _, answer = await api.query(task_id)
        assert answer["output"]["task_status"] == "SUCCEEDED"

        clock.now += 24 * 3600
        _, answer = await api.query(task_id)
        assert answer["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}
        async with http.get(url.replace("Expires=", "Expires=1")) as r:
            assert r.status == 403
        stats = await api.stats()
    assert stats["tasks"]["expired"] == 1
    assert stats["tasks"]["by_status"] == {}


async def test_short_real_ttls(start: Start, http: aiohttp.ClientSession):
    # TTLs long enough for the wait below to see the task done on a busy machine; the sleep
    # is a lower bound (past both TTLs), so lateness never changes the outcome.
    async with start(task_ttl=2.0, url_ttl=2.0) as emu:
        api = Api(http, emu)
        task_id = await api.task_id(body())
        done = await api.wait(task_id)
        url = done["output"]["results"][0]["url"]
        # Expires is whole seconds (rounded up), so wait past the next second boundary.
        await asyncio.sleep(3.2)
        async with http.get(url) as r:
            assert r.status == 403
        _, answer = await api.query(task_id)
        assert answer["output"]["task_status"] == "UNKNOWN"


async def test_expired_own_url_as_input_fails_the_task(start: Start, http: aiohttp.ClientSession):
    clock = FakeClock()
    async with start(clock=clock, url_ttl=60) as emu:
        api = Api(http, emu)
        done = await api.wait(await api.task_id(body()))
        url = done["output"]["results"][0]["url"]
        clock.now += 61
        failed = await api.wait(await api.task_id(body(image=url)))
    assert failed["output"]["task_status"] == "FAILED"
    assert failed["output"]["code"] == "BadRequest.InputDownloadFailed"
    assert "Signature" not in failed["output"]["message"]
