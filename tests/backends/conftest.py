"""Fixtures: a real emulator on 127.0.0.1 port 0, and a tiny recording server for the exact
wire shapes and the failure modes the emulator does not produce (gateway pages, stalls)."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from wanrecipe.backends import DashScopeClient
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import RunningEmulator, running_emulator

KEY = "sk-backendtest-0123456789"


def png(width: int = 512, height: int = 512, color: tuple[int, int, int] = (90, 90, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def engine_threads() -> Iterator[Executor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-engine")
    yield pool
    pool.shutdown(wait=True)


Start = Callable[..., AbstractAsyncContextManager[RunningEmulator]]


@pytest.fixture
def start(engine_threads: Executor) -> Start:
    """``async with start(latency=0.5, faults=...) as emu`` (no rate limits unless asked)."""

    def _start(**options: Any) -> AbstractAsyncContextManager[RunningEmulator]:
        options.setdefault("rps", 0)
        options.setdefault("query_qps", 0)
        options.setdefault("api_key", KEY)
        return running_emulator(EmulatorConfig(**options), executor=engine_threads)

    return _start


@pytest.fixture
async def emu(start: Start) -> AsyncIterator[RunningEmulator]:
    async with start() as running:
        yield running


@pytest.fixture
async def client(emu: RunningEmulator) -> AsyncIterator[DashScopeClient]:
    async with DashScopeClient(emu.base_url, KEY, timeout=10) as c:
        yield c


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
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
            request.method, request.path, dict(request.query), dict(request.headers), body
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


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    async with recording_server() as rec:
        yield rec
