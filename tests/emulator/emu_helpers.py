"""Helpers for the emulator tests: tiny images, request bodies, a raw HTTP API wrapper."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
from PIL import Image

from wanrecipe import wire
from wanrecipe.emulator.server import RunningEmulator

KEY = "sk-test-emulator"
AUTH = {"Authorization": f"Bearer {KEY}"}
SUBMIT_HEADERS = {**AUTH, "X-DashScope-Async": "enable"}


def png(width: int = 512, height: int = 512, color: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def body(
    function: str = "remove_watermark",
    image: str | None = None,
    *,
    prompt: str = "blue sky",
    mask: str | None = None,
    **parameters: Any,
) -> dict[str, Any]:
    inp: dict[str, Any] = {"function": function, "prompt": prompt}
    inp["base_image_url"] = image if image is not None else data_uri(png())
    if mask is not None:
        inp["mask_image_url"] = mask
    return {"model": wire.MODEL, "parameters": parameters, "input": inp}


class Api:
    """A thin raw-HTTP helper around one emulator (deliberately not our client library)."""

    def __init__(self, session: aiohttp.ClientSession, emu: RunningEmulator) -> None:
        self.s = session
        self.emu = emu
        self.base = emu.base_url

    async def submit(
        self, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        h = {**(SUBMIT_HEADERS if headers is None else headers), "Content-Type": "application/json"}
        # A stream, not bytes: aiohttp warns about (big) raw bytes bodies.
        data = io.BytesIO(json.dumps(payload).encode())
        async with self.s.post(self.base + wire.SUBMIT_PATH, data=data, headers=h) as r:
            assert r.content_type == "application/json"
            return r.status, await r.json()

    async def task_id(self, payload: Any) -> str:
        status, answer = await self.submit(payload)
        assert status == 200, answer
        return str(answer["output"]["task_id"])

    async def query(self, task_id: str, suffix: str = "") -> tuple[int, dict[str, Any]]:
        async with self.s.get(f"{self.base}/tasks/{task_id}{suffix}", headers=AUTH) as r:
            assert r.content_type == "application/json"
            return r.status, await r.json()

    async def wait(self, task_id: str, timeout: float = 120.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            status, answer = await self.query(task_id)
            assert status == 200, answer
            if answer["output"]["task_status"] in wire.TERMINAL_STATUSES:
                return answer
            assert loop.time() < end, f"task still {answer['output']['task_status']}"
            await asyncio.sleep(0.02)

    async def stats(self) -> dict[str, Any]:
        async with self.s.get(self.emu.origin + "/emulator/stats") as r:
            assert r.content_type == "application/json"
            return dict(await r.json())


Start = Callable[..., AbstractAsyncContextManager[RunningEmulator]]
