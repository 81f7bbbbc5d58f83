"""The client-side quota against the emulator's server-side one: nothing is ever refused."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from wanrecipe.backends import DashScopeClient
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import running_emulator
from wanrecipe.executor.polling import DurationModel, wait_for_task
from wanrecipe.executor.quota import QuotaGate

KEY = "sk-quotatest-0123456789"


def image() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (512, 512), (200, 30, 30)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.slow
async def test_default_quota_is_never_exceeded() -> None:
    """The model's account quota (2 submits/s, 2 running, 20 queries/s), enforced by the
    emulator with 429 and with refusal of a third running task; the default gate stays below
    all of it while keeping both slots busy."""
    config = EmulatorConfig(latency=0.3, over_concurrency="reject", api_key=KEY, rate_grace=0.0)
    gate = QuotaGate()
    model = DurationModel()
    img = image()
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with (
            running_emulator(config, executor=pool) as emu,
            DashScopeClient(emu.base_url, KEY) as client,
        ):

            async def one() -> str:
                async with gate.slot():
                    async with gate.submission():
                        sub = await client.submit("remove_watermark", "x", img)
                    state = await wait_for_task(
                        client,
                        sub.task_id,
                        "remove_watermark",
                        gate=gate,
                        model=model,
                        deadline=time.monotonic() + 300,
                    )
                return state.status

            t0 = time.monotonic()
            statuses = await asyncio.gather(*(one() for _ in range(10)))
            elapsed = time.monotonic() - t0
            stats = emu.stats()
    assert statuses == ["SUCCEEDED"] * 10
    assert stats["submissions"]["refused"] == 0, stats["submissions"]["refused_by_code"]
    assert stats["throttles"] == {}
    assert stats["submissions"]["peak_accepted_1s"] <= 2
    assert stats["tasks"]["peak_running"] <= 2
    # 10 tasks at most 2 submits per second cannot take less than 4 s (the rate, kept); how
    # much longer depends on the machine, so only the lower bound is asserted.
    assert elapsed > 4.0
