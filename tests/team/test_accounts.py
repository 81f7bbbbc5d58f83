"""Emulator accounts: quota, tasks and the task list per API key, over real HTTP.

"Two accounts, each at its own quota" and "two teammates, one account" (two clients with
one key share one quota). The stats name an account by a hash of its key, never the key.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from wanrecipe import wire
from wanrecipe.api import load_recipe
from wanrecipe.emulator.accounts import key_id
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread, running_emulator
from wanrecipe.images import to_data_uri
from wanrecipe.runner import BackendChoice, execute

ALICE, BOB = "sk-team-alice-0001", "sk-team-bob-0002"
#: Tasks stay RUNNING for the whole test: the counts are read while they run, not timed.
HOLD = EmulatorConfig(
    latency=120.0, concurrency=2, rps=0, query_qps=0, executor="thread", engine_time_budget=0.2
)


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable"}


def body(image: str) -> dict[str, Any]:
    return {
        "model": wire.MODEL,
        "input": {"function": "colorization", "prompt": "", "base_image_url": image},
        "parameters": {"n": 1},
    }


async def submit(http: aiohttp.ClientSession, base: str, key: str, image: str) -> str:
    async with http.post(base + wire.SUBMIT_PATH, json=body(image), headers=headers(key)) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["output"]["task_id"])


async def status(http: aiohttp.ClientSession, base: str, key: str, task_id: str) -> str:
    async with http.get(f"{base}/tasks/{task_id}", headers=headers(key)) as r:
        return str((await r.json())["output"]["task_status"])


async def listed(http: aiohttp.ClientSession, base: str, key: str) -> set[str]:
    async with http.get(
        base + wire.LIST_PATH, params={"page_size": 100}, headers=headers(key)
    ) as r:
        return {t["task_id"] for t in (await r.json())["data"]}


async def stats(http: aiohttp.ClientSession, origin: str) -> tuple[dict[str, Any], str]:
    async with http.get(origin + "/emulator/stats") as r:
        text = await r.text()
        return json.loads(text), text


def image(tmp_path: Path) -> str:
    path = tmp_path / "in.png"
    Image.new("RGB", (512, 512), (90, 120, 150)).save(path)
    return to_data_uri(path.read_bytes(), "image/png")


async def test_two_accounts_each_at_its_own_quota(tmp_path: Path) -> None:
    img = image(tmp_path)
    async with running_emulator(HOLD) as emu, aiohttp.ClientSession() as http:
        base = emu.base_url
        ids = {key: [await submit(http, base, key, img) for _ in range(3)] for key in (ALICE, BOB)}
        snap, text = await stats(http, emu.origin)
        for key in (ALICE, BOB):
            mine = snap["accounts"][key_id(key)]
            assert mine["tasks"]["running"] == 2 and mine["tasks"]["peak_running"] == 2
            assert mine["tasks"]["by_status"] == {"RUNNING": 2, "PENDING": 1}
            assert mine["submissions"]["accepted"] == 3
        assert snap["tasks"]["peak_running"] == 4  # the total exceeds one account's quota
        assert snap["submissions"]["accepted"] == 6
        assert ALICE not in text and BOB not in text
        # Each account sees its own tasks only; another's task is unknown to it.
        assert await listed(http, base, ALICE) == set(ids[ALICE])
        assert await listed(http, base, BOB) == set(ids[BOB])
        assert await status(http, base, ALICE, ids[BOB][0]) == "UNKNOWN"
        assert await status(http, base, BOB, ids[BOB][0]) == "RUNNING"
        async with http.post(f"{base}/tasks/{ids[BOB][2]}/cancel", headers=headers(ALICE)) as r:
            assert r.status == 400  # not Alice's to cancel
        assert await status(http, base, BOB, ids[BOB][2]) == "PENDING"


async def test_two_teammates_one_account_share_one_quota(tmp_path: Path) -> None:
    img = image(tmp_path)
    async with (
        running_emulator(HOLD) as emu,
        aiohttp.ClientSession() as laptop,
        aiohttp.ClientSession() as ci,
    ):
        base = emu.base_url
        mine = [await submit(laptop, base, ALICE, img) for _ in range(3)]
        theirs = [await submit(ci, base, ALICE, img) for _ in range(3)]
        snap, _ = await stats(laptop, emu.origin)
        assert list(snap["accounts"]) == [key_id(ALICE)]
        account = snap["accounts"][key_id(ALICE)]
        assert account["tasks"]["by_status"] == {"RUNNING": 2, "PENDING": 4}
        assert snap["tasks"]["peak_running"] == 2
        assert await listed(ci, base, ALICE) == set(mine + theirs)


def recipe(folder: Path, steps: int, seed0: int) -> Path:
    """``steps`` independent steps; seeds from ``seed0`` (distinct recipes share no cache)."""
    Image.new("RGB", (512, 512), (90, 120, 150)).save(folder / "in.png")
    lines = [
        f"  s{i}: {{function: colorization, image: in.png, prompt: '', "
        f"parameters: {{seed: {seed0 + i}}}}}"
        for i in range(steps)
    ]
    path = folder / f"four-{seed0}.yaml"
    path.write_text("version: 1\nname: four\nsteps:\n" + "\n".join(lines) + "\n")
    return path


async def test_two_accounts_run_side_by_side_each_at_its_quota(tmp_path: Path) -> None:
    """Two wanrecipe runs on two keys, one state directory: each keeps its account's quota
    (the emulator refuses anything over it), and neither waits for the other's."""
    config = EmulatorConfig(
        latency=2.0, concurrency=2, over_concurrency="reject", engine_time_budget=0.2
    )
    with EmulatorThread(config) as emu:

        async def run(key: str, seed0: int) -> Any:
            backend = BackendChoice(kind="url", base_url=emu.base_url, api_key=key)
            return await execute(
                load_recipe(recipe(tmp_path, 4, seed0)),
                backend=backend,
                run_dir=tmp_path / key,
                state_dir=tmp_path / "state",
            )

        records = await asyncio.gather(run(ALICE, 0), run(BOB, 100))
        snap = emu.stats()
    assert [r.status for r in records] == ["ok", "ok"]
    for key in (ALICE, BOB):
        mine = snap["accounts"][key_id(key)]
        assert mine["submissions"]["accepted"] == 4 and mine["submissions"]["refused"] == 0
        assert mine["tasks"]["peak_running"] <= 2
        assert mine["submissions"]["peak_accepted_1s"] <= 2
    assert snap["tasks"]["peak_running"] > 2  # side by side, not one after the other
