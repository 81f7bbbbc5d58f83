"""Result downloads: only from the backend's own hosts, never redirected, capped in size and in
time. Real servers over loopback (the emulator cannot be told to misbehave this way)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from tests.backends.backend_helpers import KEY, png, recording_server
from wanrecipe.backends import DashScopeClient
from wanrecipe.backends.hosts import result_url_problem
from wanrecipe.errors import BackendError

DASHSCOPE = "https://dashscope.aliyuncs.com/api/v1"


@pytest.mark.parametrize(
    ("base", "url", "allowed"),
    [
        ("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8080/results/a.png?Signature=x", True),
        ("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8081/results/a.png", False),
        ("http://localhost:8080/api/v1", "http://127.0.0.1:8080/results/a.png", False),
        ("http://127.0.0.1:8080/api/v1", "http://169.254.169.254/latest/meta-data", False),
        ("http://127.0.0.1:8080/api/v1", "http://10.0.0.1/x.png", False),
        ("http://127.0.0.1:8080/api/v1", "file:///etc/passwd", False),
        ("http://127.0.0.1:8080/api/v1", "http://user:pw@127.0.0.1:8080/x.png", False),
        ("http://127.0.0.1:8080/api/v1", "http://127.0.0.1:notaport/x.png", False),
        (
            DASHSCOPE,
            "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/a.png?Expires=1",
            True,
        ),
        (DASHSCOPE, "http://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/a.png", False),
        (DASHSCOPE, "https://evil.example/dashscope.aliyuncs.com/a.png", False),
        (DASHSCOPE, "https://aliyuncs.com.evil.example/a.png", False),
        (DASHSCOPE, "https://127.0.0.1/a.png", False),
    ],
)
def test_which_result_urls_may_be_fetched(base: str, url: str, allowed: bool):
    assert (result_url_problem(base, url) is None) is allowed


async def test_a_result_url_on_another_server_is_never_requested(tmp_path: Path):
    async with recording_server() as backend, recording_server() as other:
        other.routes["/a.png"] = lambda r: web.Response(body=png(), content_type="image/png")
        async with DashScopeClient(backend.base_url, KEY) as client:
            with pytest.raises(BackendError) as info:
                await client.download(other.origin + "/a.png", tmp_path / "a.png", max_bytes=10**7)
    assert info.value.code == "ForeignResultURL"
    assert other.requests == [] and backend.requests == []
    assert list(tmp_path.iterdir()) == []


async def test_redirects_are_not_followed(tmp_path: Path):
    async with recording_server() as backend, recording_server() as other:
        other.routes["/a.png"] = lambda r: web.Response(body=png(), content_type="image/png")
        backend.routes["/results/a.png"] = lambda r: web.Response(
            status=302, headers={"Location": other.origin + "/a.png"}
        )
        async with DashScopeClient(backend.base_url, KEY) as client:
            with pytest.raises(BackendError) as info:
                await client.download(
                    backend.origin + "/results/a.png", tmp_path / "a.png", max_bytes=10**7
                )
    assert info.value.status == 302
    assert other.requests == []
    assert list(tmp_path.iterdir()) == []


async def test_a_body_without_length_is_cut_at_the_cap(tmp_path: Path):
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(2000):  # 128 MB if nobody stops it
            await resp.write(b"\0" * 65536)
        return resp

    async with recording_server() as backend:
        backend.routes["/results/big.png"] = endless
        async with DashScopeClient(backend.base_url, KEY) as client:
            with pytest.raises(BackendError) as info:
                await client.download(
                    backend.origin + "/results/big.png", tmp_path / "big.png", max_bytes=10**6
                )
    assert info.value.code == "DownloadTooLarge"
    assert list(tmp_path.iterdir()) == []


async def test_a_trickling_download_ends_at_its_time_limit(tmp_path: Path):
    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 10**6
        await resp.prepare(request)
        for _ in range(300):  # a byte every 0.1 s: each wait is short, the whole is 30 s
            await resp.write(b"\0")
            await asyncio.sleep(0.1)
        return resp

    async with recording_server() as backend:
        backend.routes["/results/slow.png"] = trickle
        async with DashScopeClient(backend.base_url, KEY, download_timeout=1.0) as client:
            started = time.monotonic()
            with pytest.raises(BackendError):
                await client.download(
                    backend.origin + "/results/slow.png", tmp_path / "slow.png", max_bytes=10**7
                )
            elapsed = time.monotonic() - started
    assert elapsed < 15  # the 1 s limit, not the 30 s the server would take
    assert list(tmp_path.iterdir()) == []
