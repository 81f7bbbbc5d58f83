"""Helpers shared by the backend tests (a module with a unique name: see emu_helpers)."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

from wanrecipe.emulator.server import RunningEmulator

KEY = "sk-backendtest-0123456789"


def png(width: int = 512, height: int = 512, color: tuple[int, int, int] = (90, 90, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


Start = Callable[..., AbstractAsyncContextManager[RunningEmulator]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""
    form: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Recorder:
    """A loopback server answering each path with a scripted handler, recording requests."""

    base_url: str
    origin: str
    requests: list[Recorded]
    routes: dict[str, Callable[[web.Request], Any]]


@asynccontextmanager
async def recording_server() -> AsyncIterator[Recorder]:
    requests: list[Recorded] = []
    routes: dict[str, Callable[[web.Request], Any]] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec = Recorded(
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            body,
            request.raw_path.partition("?")[2],
        )
        requests.append(rec)
        handler = routes.get(request.path)
        if handler is None:
            return web.json_response({"code": "NotFound", "message": "no route"}, status=404)
        result = handler(request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    origin = f"http://127.0.0.1:{port}"
    try:
        yield Recorder(origin + "/api/v1", origin, requests, routes)
    finally:
        await runner.cleanup()
