"""Inputs are identified when a step is ready and built when its slot is granted, once per
digest for every step that shares them; a large file is uploaded once (a real emulator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PIL import Image

from wanrecipe.backends import DashScopeClient
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import RunningEmulator, running_emulator
from wanrecipe.errors import ImageInputError
from wanrecipe.executor.inputs import StepImage
from wanrecipe.executor.payloads import Payloads

KEY = "sk-payloads-0123456789"


@asynccontextmanager
async def emulator() -> AsyncIterator[tuple[RunningEmulator, DashScopeClient]]:
    with ThreadPoolExecutor(1) as pool:
        config = EmulatorConfig(rps=0, query_qps=0, api_key=KEY)
        async with (
            running_emulator(config, executor=pool) as emu,
            DashScopeClient(emu.base_url, KEY, timeout=10) as client,
        ):
            yield emu, client


def photo(path: Path, shade: int = 90) -> Path:
    Image.new("RGB", (600, 520), (shade, 120, 150)).save(path)
    return path


async def test_one_data_uri_for_every_step_over_the_same_photo(tmp_path: Path) -> None:
    async with emulator() as (emu, client):
        payloads = Payloads(backend="url:x", uploader=client, upload_threshold=10_000_000)
        src = photo(tmp_path / "in.png")
        ids = [await payloads.identify(src) for _ in range(5)]
        assert all(p.value == "" and p.pending is not None for p in ids)  # nothing built yet
        assert len({p.sha256 for p in ids}) == 1 and payloads.built == 0
        first = await payloads.acquire(ids[0])
        second = await payloads.acquire(ids[1])
        assert first.value.startswith("data:image/png;base64,")
        assert second.value is first.value  # shared, not a copy
        assert first.shown == f"{src} (data URI)"
        assert payloads.built == 1 and payloads.live == 1
        for p in ids[:4]:
            payloads.release(p)
        assert payloads.live == 1  # one step still waits for it
        payloads.release(ids[4])
        assert payloads.live == 0  # dropped once the last claimant submitted
        assert emu.stats()["uploads"] == 0


async def test_a_large_file_is_uploaded_once_and_its_url_reused(tmp_path: Path) -> None:
    async with emulator() as (emu, client):
        payloads = Payloads(backend="url:x", uploader=client, upload_threshold=100)
        src = photo(tmp_path / "big.png")
        ids = [await payloads.identify(src) for _ in range(4)]
        got = await asyncio.gather(*(payloads.acquire(p) for p in ids))
        assert {g.value for g in got} == {got[0].value} and got[0].is_oss
        assert got[0].shown == f"{src} (uploaded as {got[0].value})"
        for p in ids:
            payloads.release(p)
        # released by everyone, the URL is still good for a later step
        again = await payloads.acquire(payloads.reclaim(ids[0]))
        assert again.value == got[0].value
        assert emu.stats()["uploads"] == 1


async def test_a_file_changed_during_the_run_is_refused(tmp_path: Path) -> None:
    async with emulator() as (_, client):
        payloads = Payloads(backend="url:x", uploader=client, upload_threshold=10_000_000)
        src = photo(tmp_path / "in.png")
        ident = await payloads.identify(src)
        photo(src, shade=10)  # same size on disk, other bytes
        with pytest.raises(ImageInputError, match="changed during the run"):
            await payloads.acquire(ident)


async def test_step_outputs_and_urls(tmp_path: Path) -> None:
    async with emulator() as (_, client):
        payloads = Payloads(backend="url:x", uploader=client, upload_threshold=10_000_000)
        out = photo(tmp_path / "a.png")
        import hashlib

        sha = hashlib.sha256(out.read_bytes()).hexdigest()
        size = out.stat().st_size
        live = StepImage("a", 0, out, sha, size, 600, 520, "http://127.0.0.1:1/r.png", 4e9, "url:x")
        ident = await payloads.identify(live)
        assert ident.pending is None and ident.value == live.url  # the live URL, nothing to build
        expired = StepImage("a", 0, out, sha, size, 600, 520, None, 0.0, "url:x")
        ident = await payloads.identify(expired)
        built = await payloads.acquire(ident)
        assert built.value.startswith("data:") and built.shown == "steps.a (data URI)"
        remote = await payloads.identify("http://127.0.0.1:1/x.png")
        assert remote.value == "http://127.0.0.1:1/x.png" and remote.pending is None
