"""Fault injection: the SPEC parser, determinism, and every fault kind over HTTP."""

from __future__ import annotations

import aiohttp
import pytest

from wanrecipe.emulator.faults import FAULT_KINDS, FaultInjector, parse_faults, spec_help
from wanrecipe.errors import UsageError

from .emu_helpers import Api, Start, body


def test_spec_parses_probabilities_and_scripts():
    rules = parse_faults(" submit.429=first:2, query.503=0.25,task.timeout=10% ,")
    assert [(r.kind, r.probability, r.first) for r in rules] == [
        ("submit.429", 0.0, 2),
        ("query.503", 0.25, 0),
        ("task.timeout", 0.1, 0),
    ]
    assert parse_faults("") == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("submit.418=0.1", "unknown kind 'submit.418'"),
        ("query.503", "expected KIND=AMOUNT"),
        ("query.503=1.5", "must be a probability"),
        ("query.503=lots", "must be a probability"),
        ("query.503=first:0", "first:N needs a whole number N >= 1"),
        ("query.503=first:x", "first:N needs a whole number"),
    ],
)
def test_spec_errors_name_the_bad_rule(spec: str, message: str):
    with pytest.raises(UsageError, match=message):
        parse_faults(spec)


def test_decisions_are_deterministic_by_seed():
    rules = parse_faults("query.503=0.3,query.500=0.3")

    def run(seed: int) -> list[str | None]:
        injector = FaultInjector(rules, seed)
        return [injector.pick("query") for _ in range(200)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    picks = run(1)
    assert 40 <= picks.count("query.503") <= 80  # about 0.3 of 200
    assert picks.count("query.500") > 10  # second rule gets what the first leaves
    injector = FaultInjector(rules, 1)
    for _ in range(200):
        injector.pick("query")
    assert injector.injected["query.503"] == picks.count("query.503")


def test_help_lists_every_kind():
    text = spec_help()
    assert all(kind in text for kind in FAULT_KINDS)


async def test_submit_faults(start: Start, http: aiohttp.ClientSession):
    spec = "submit.429=first:1,submit.500=first:2,submit.drop=first:3,submit.lost=first:4"
    async with start(faults=spec) as emu:
        api = Api(http, emu)
        status, answer = await api.submit(body())
        assert (status, answer["code"]) == (429, "Throttling.RateQuota")
        status, answer = await api.submit(body())
        assert (status, answer["code"]) == (500, "InternalError")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.submit(body())
        assert (await api.stats())["tasks"]["by_status"] == {}
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.submit(body())
        # The lost submit created a task: it runs and bills although nobody knows its id.
        stats = await api.stats()
        assert stats["submissions"]["accepted"] == 1
        assert sum(stats["tasks"]["by_status"].values()) == 1
        status, _ = await api.submit(body())
        assert status == 200
        stats = await api.stats()
    assert stats["faults"] == {"submit.429": 1, "submit.500": 1, "submit.drop": 1, "submit.lost": 1}
    assert stats["submissions"]["accepted"] == 2
    assert stats["submissions"]["refused_by_code"] == {
        "Throttling.RateQuota": 1,
        "InternalError": 1,
        "(connection dropped)": 1,
    }


async def test_query_faults(start: Start, http: aiohttp.ClientSession):
    async with start(faults="query.503=first:1,query.504=first:2,query.500=first:3") as emu:
        api = Api(http, emu)
        task_id = await api.task_id(body())
        answers = [await api.query(task_id) for _ in range(4)]
        stats = await api.stats()
    assert [(s, a.get("code")) for s, a in answers[:3]] == [
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
        (500, "InternalError"),
    ]
    assert answers[3][0] == 200
    assert stats["faults"] == {"query.503": 1, "query.504": 1, "query.500": 1}


async def test_query_fault_probability_is_reproducible(start: Start, http: aiohttp.ClientSession):
    async def statuses(seed: int) -> list[int]:
        async with start(faults="query.503=0.5", fault_seed=seed) as emu:
            api = Api(http, emu)
            task_id = await api.task_id(body())
            return [(await api.query(task_id))[0] for _ in range(30)]

    first, again, other = await statuses(7), await statuses(7), await statuses(8)
    assert first == again
    assert first != other
    assert set(first) == {200, 503}


async def test_task_faults(start: Start, http: aiohttp.ClientSession):
    spec = "task.error=first:1,task.timeout=first:2,task.inspection=first:3"
    async with start(faults=spec) as emu:
        api = Api(http, emu)
        ids = [await api.task_id(body(n=2)) for _ in range(4)]
        done = [(await api.wait(i)) for i in ids]
        stats = await api.stats()
    assert [(d["output"]["task_status"], d["output"].get("code")) for d in done] == [
        ("FAILED", "InternalError"),
        ("FAILED", "InternalError.Timeout"),
        ("FAILED", "DataInspectionFailed"),
        ("SUCCEEDED", None),
    ]
    assert done[2]["output"]["message"] == "Input data may contain inappropriate content."
    assert done[0]["output"]["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 2}
    assert stats["billed_images"] == 2


async def test_output_faults_give_partial_success(start: Start, http: aiohttp.ClientSession):
    async with start(faults="output.timeout=first:1") as emu:
        api = Api(http, emu)
        partial = await api.wait(await api.task_id(body(n=3)))
        stats = await api.stats()
    out = partial["output"]
    assert out["task_status"] == "SUCCEEDED"
    assert out["results"][0] == {
        "code": "InternalError.Timeout",
        "message": "An internal timeout error has occured during execution, please try again "
        "later or contact service support.",
    }
    # Each image comes with the engine's labels (docs/engines.md), the failed output with none.
    assert all(set(r) == {"url", "fidelity", "engine", "note"} for r in out["results"][1:])
    assert out["task_metrics"] == {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}
    assert partial["usage"] == {"image_count": 2}
    assert stats["billed_images"] == 2
    assert stats["failed_outputs"] == 1


async def test_a_task_whose_every_output_fails_is_failed(start: Start, http: aiohttp.ClientSession):
    async with start(faults="output.timeout=first:2") as emu:
        api = Api(http, emu)
        done = await api.wait(await api.task_id(body(n=2)))
        stats = await api.stats()
    assert done["output"]["task_status"] == "FAILED"
    assert done["output"]["code"] == "InternalError.Timeout"
    assert "usage" not in done
    assert stats["billed_images"] == 0


async def test_download_faults(start: Start, http: aiohttp.ClientSession):
    async with start(faults="download.500=first:1,download.expired=first:2") as emu:
        api = Api(http, emu)
        done = await api.wait(await api.task_id(body()))
        url = done["output"]["results"][0]["url"]
        statuses = []
        for _ in range(3):
            async with http.get(url) as r:
                statuses.append(r.status)
                if r.status != 200:
                    assert r.content_type == "application/json"
        stats = await api.stats()
    assert statuses == [500, 403, 200]
    assert stats["faults"] == {"download.500": 1, "download.expired": 1}
