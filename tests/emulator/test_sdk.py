"""The official dashscope SDK, unchanged but for its base URL, against the emulator.

The SDK's wait() sleeps 1, 1, 2, 2, ... seconds between polls, so each call takes a second or
more: the checks are combined into few tests and the ten functions run in parallel threads.
"""

from __future__ import annotations

import asyncio
import functools
import io
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dashscope
import pytest
import requests
from dashscope import ImageSynthesis
from dashscope.aigc.image_synthesis import AioImageSynthesis
from dashscope.common.error import InvalidTask
from PIL import Image, ImageDraw

from wanrecipe import wire
from wanrecipe.api import load_recipe
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread, running_emulator
from wanrecipe.runner import BackendChoice, execute

from .emu_helpers import KEY, data_uri

pytestmark = pytest.mark.slow

FAST = {"rps": 0, "query_qps": 0, "concurrency": 0, "engine_time_budget": 0.2}


@pytest.fixture(autouse=True)
def sdk_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    saved = dashscope.base_http_api_url
    yield
    dashscope.base_http_api_url = saved


def _scene(path: Path, size: tuple[int, int] = (640, 512)) -> Path:
    im = Image.new("RGB", size, (90, 140, 200))
    draw = ImageDraw.Draw(im)
    draw.rectangle((200, 180, 420, 400), fill=(200, 60, 40))
    draw.ellipse((60, 40, 160, 140), fill=(250, 230, 90))
    im.save(path)
    return path


def _mask(path: Path, size: tuple[int, int] = (640, 512)) -> Path:
    im = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(im).rectangle((200, 180, 420, 400), fill=(255, 255, 255))
    im.save(path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Input images on disk, also served by a loopback file server (the "URL" inputs)."""
    _scene(tmp_path / "scene.png")
    _mask(tmp_path / "mask.png")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ref(kind: str, path: Path, url_root: str) -> str:
    if kind == "url":
        return f"{url_root}/{path.name}"
    if kind == "data":
        return data_uri(path.read_bytes())
    return f"file://{path}"


PARAMS: dict[str, dict[str, Any]] = {
    "stylization_all": {"strength": 0.6},
    "description_edit": {"strength": 0.4},
    "expand": {"left_scale": 1.5, "right_scale": 1.5, "top_scale": 1.2, "bottom_scale": 1.2},
    "super_resolution": {"upscale_factor": 2},
    "doodle": {"is_sketch": False},
}
EXPECTED_SIZE = {"expand": (960, 614), "super_resolution": (1280, 1024)}


def test_call_all_ten_functions_with_url_data_and_file_inputs(
    files: tuple[Path, str], engine_pool: Executor
):
    root, url_root = files
    kinds = ("url", "data", "file")
    jobs = [
        (function, kinds[i % 3], kinds[(i + 1) % 3]) for i, function in enumerate(wire.FUNCTIONS)
    ]
    with EmulatorThread(EmulatorConfig(**FAST), executor=engine_pool) as emu:
        dashscope.base_http_api_url = emu.base_url

        def call(job: tuple[str, str, str]) -> Any:
            function, kind, mask_kind = job
            extra: dict[str, Any] = {}
            if function in wire.MASK_FUNCTIONS:
                extra["mask_image_url"] = _ref(mask_kind, root / "mask.png", url_root)
            return ImageSynthesis.call(
                model=wire.MODEL,
                api_key=KEY,
                function=function,
                prompt="把房子变成木质风格",
                base_image_url=_ref(kind, root / "scene.png", url_root),
                n=1,
                seed=42,
                **extra,
                **PARAMS.get(function, {}),
            )

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            answers = list(pool.map(call, jobs))
        stats = emu.stats()

        for (function, kind, _), answer in zip(jobs, answers, strict=True):
            assert answer.status_code == 200, (function, kind, answer)
            assert answer.output.task_status == "SUCCEEDED", (function, kind, answer.output)
            assert answer.usage.image_count == 1
            url = answer.output.results[0].url
            assert url.startswith(emu.origin + "/results/")
            with urllib.request.urlopen(url) as r, Image.open(io.BytesIO(r.read())) as im:
                assert im.format == "PNG"
                assert im.size == EXPECTED_SIZE.get(function, (640, 512)), function

    assert stats["submissions"]["accepted"] == 10
    # Every file:// input went through the policy + upload + oss:// path.
    assert stats["uploads"] == sum(k == "file" for _, k, _ in jobs) + sum(
        m == "file" for f, _, m in jobs if f in wire.MASK_FUNCTIONS
    )
    assert stats["billed_images"] == 10


def test_async_call_fetch_wait_cancel_list(engine_pool: Executor, files: tuple[Path, str]):
    root, _ = files
    # The running task must outlast two submits, a fetch and a cancel, on a busy machine too.
    config = EmulatorConfig(**{**FAST, "concurrency": 1, "latency": 3.0})
    with EmulatorThread(config, executor=engine_pool) as emu:
        dashscope.base_http_api_url = emu.base_url
        kwargs = {
            "model": wire.MODEL,
            "api_key": KEY,
            "function": "super_resolution",
            "prompt": "图像超分",
            "base_image_url": data_uri((root / "scene.png").read_bytes()),
            "upscale_factor": 2,
            "n": 2,
        }
        running = ImageSynthesis.async_call(**kwargs)
        queued = ImageSynthesis.async_call(**kwargs)
        assert running.status_code == queued.status_code == 200
        assert running.output.task_status == "PENDING"

        fetched = ImageSynthesis.fetch(queued, api_key=KEY)
        assert fetched.output.task_status == "PENDING"
        canceled = ImageSynthesis.cancel(queued, api_key=KEY)
        assert canceled.status_code == 200
        assert ImageSynthesis.fetch(queued.output.task_id, api_key=KEY).output.task_status == (
            "CANCELED"
        )
        refused = ImageSynthesis.cancel(running, api_key=KEY)
        assert (refused.status_code, refused.code) == (400, "UnsupportedOperation")

        done = ImageSynthesis.wait(running, api_key=KEY)
        assert done.output.task_status == "SUCCEEDED"
        assert done.output.task_metrics == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
        assert done.usage.image_count == 2
        assert len(done.output.results) == 2

        listed = ImageSynthesis.list(api_key=KEY, status="CANCELED")
        assert listed.status_code == 200
        assert [t["task_id"] for t in listed.output["data"]] == [queued.output.task_id]
        assert listed.output["total"] == 1


def test_sdk_error_paths(engine_pool: Executor):
    config = EmulatorConfig(**FAST, api_key=KEY, faults="task.inspection=first:1,query.503=first:1")
    image = data_uri(_png_bytes())
    with EmulatorThread(config, executor=engine_pool) as emu:
        dashscope.base_http_api_url = emu.base_url
        args = {"model": wire.MODEL, "function": "colorization", "prompt": "蓝色背景"}

        with pytest.raises(InvalidTask, match="InvalidApiKey"):
            ImageSynthesis.call(api_key="sk-wrong", base_image_url=image, **args)
        with pytest.raises(InvalidTask, match="InvalidParameter"):
            ImageSynthesis.call(api_key=KEY, base_image_url=image, n=7, **args)
        bad = ImageSynthesis.async_call(api_key=KEY, base_image_url=image, n=7, **args)
        assert (bad.status_code, bad.code) == (400, "InvalidParameter")

        # The first task fails inspection; the first poll also gets a 503, which wait() retries.
        failed = ImageSynthesis.call(api_key=KEY, base_image_url=image, **args)
        assert failed.status_code == 200
        assert failed.output.task_status == "FAILED"
        assert failed.output.code == "DataInspectionFailed"
        assert failed.usage is None or not failed.usage
        stats = emu.stats()
    assert stats["faults"] == {"task.inspection": 1, "query.503": 1}
    assert stats["submissions"]["refused_by_code"] == {"InvalidApiKey": 1, "InvalidParameter": 2}


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (512, 512), 128).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


async def test_aio_sdk(engine_pool: Executor):
    config = EmulatorConfig(**FAST)
    try:
        await _aio_checks(config, engine_pool)
    finally:
        # The SDK keeps one aiohttp session per process; close it inside this test's loop.
        await dashscope.close_shared_aio_session()


async def _aio_checks(config: EmulatorConfig, engine_pool: Executor) -> None:
    async with running_emulator(config, executor=engine_pool) as emu:
        dashscope.base_http_api_url = emu.base_url
        args = {
            "model": wire.MODEL,
            "api_key": KEY,
            "function": "stylization_all",
            "prompt": "转换成法国绘本风格",
            "base_image_url": data_uri(_png_bytes()),
            "strength": 0.5,
            "watermark": True,
        }
        # call() polls GET /tasks/{id}/?strength=0.5&watermark=true (trailing slash, query).
        done = await AioImageSynthesis.call(**args)
        assert done.status_code == 200
        assert done.output.task_status == "SUCCEEDED"
        started = await AioImageSynthesis.async_call(**args)
        assert started.status_code == 200
        fetched = await AioImageSynthesis.fetch(started, api_key=KEY)
        assert fetched.output.task_id == started.output.task_id
        waited = await AioImageSynthesis.wait(started, api_key=KEY)
        assert waited.output.task_status == "SUCCEEDED"
        assert waited.usage.image_count == 1
        stats = emu.stats()
    assert stats["submissions"]["accepted"] == 2
    assert stats["queries"] >= 3


def test_sdk_retries_a_dropped_submit_and_can_pay_twice():
    """What the SDK does when a submit connection drops: it re-sends once, silently.

    ``submit.drop`` (no task was created) is then harmless; ``submit.lost`` (the task existed)
    leaves two tasks, both billed: why a runner must not lean on the SDK's retry.
    """
    image = data_uri(_png_bytes())
    for spec, tasks in (("submit.drop=first:1", 1), ("submit.lost=first:1", 2)):
        config = EmulatorConfig(**FAST, faults=spec, executor="thread")
        with EmulatorThread(config) as emu:
            dashscope.base_http_api_url = emu.base_url
            answer = ImageSynthesis.async_call(
                model=wire.MODEL, api_key=KEY, function="remove_watermark", prompt="去除文字",
                base_image_url=image,
            )  # fmt: skip
            stats = emu.stats()
        assert answer.status_code == 200, spec
        assert stats["submissions"]["attempts"] == 2, spec
        assert stats["submissions"]["accepted"] == tasks, spec


def _settled(emu: EmulatorThread, tasks: int) -> dict[str, Any]:
    """The stats once ``tasks`` tasks exist and none is still running (events, not time)."""
    deadline = time.monotonic() + 60
    while True:
        stats = emu.stats()
        live = stats["tasks"]
        if sum(live["by_status"].values()) >= tasks and live["running"] == 0:
            return stats
        assert time.monotonic() < deadline, stats["tasks"]
        time.sleep(0.05)


class _SlowImage(BaseHTTPRequestHandler):
    """An input image that takes 3 s to arrive: a submit that fetches it outlasts a 1 s
    client timeout, and the server still creates the task after the client gave up."""

    def do_GET(self) -> None:
        time.sleep(3)
        data = _png_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_what_one_sdk_call_costs_when_a_submit_is_lost(tmp_path: Path):
    """``ImageSynthesis.call(n=2)`` (submit, then wait) under each submit failure, as the
    SDK in the venv behaves: it re-sends a POST whose connection closed unanswered (it
    assumes the request never arrived), never one answered 5xx, never one that timed out.

    | fault                 | POSTs | tasks | billed images | the caller gets            |
    | submit.lost once      | 2     | 2     | 4             | one task's 2 images        |
    | submit.lost twice     | 2     | 2     | 4             | ConnectionError, no task id|
    | submit.500 once       | 1     | 0     | 0             | InvalidTask (no retry)     |
    | read timeout (1 s)    | 1     | 1     | 2             | ReadTimeout, no task id    |

    wanrecipe under the first: one POST, one task, 2 images (the lost task is found in the
    task list; tests/runner/test_paytwice.py has the other cases).
    """
    image = data_uri(_png_bytes())
    args = {"model": wire.MODEL, "api_key": KEY, "function": "remove_watermark", "n": 2}
    seen: dict[str, tuple[Any, int, int, int]] = {}
    faults = [("submit.lost=first:1", 2), ("submit.lost=first:2", 2), ("submit.500=first:1", 0)]
    for spec, tasks in faults:
        with EmulatorThread(EmulatorConfig(**FAST, faults=spec, executor="thread")) as emu:
            dashscope.base_http_api_url = emu.base_url
            try:
                answer = ImageSynthesis.call(prompt="去除文字", base_image_url=image, **args)
                outcome: Any = (answer.output.task_status, len(answer.output.results))
            except Exception as exc:  # what the caller sees is part of the observation
                outcome = type(exc).__name__
            stats = _settled(emu, tasks)
        seen[spec] = (
            outcome,
            stats["submissions"]["attempts"],
            stats["submissions"]["accepted"],
            stats["billed_images"],
        )
    assert seen == {
        "submit.lost=first:1": (("SUCCEEDED", 2), 2, 2, 4),
        "submit.lost=first:2": ("ConnectionError", 2, 2, 4),
        "submit.500=first:1": ("InvalidTask", 1, 0, 0),
    }

    slow = ThreadingHTTPServer(("127.0.0.1", 0), _SlowImage)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{slow.server_address[1]}/slow.png"
    config = EmulatorConfig(**FAST, validate_images="submit", executor="thread")
    try:
        with EmulatorThread(config) as emu:
            dashscope.base_http_api_url = emu.base_url
            with pytest.raises(requests.exceptions.ReadTimeout):
                ImageSynthesis.call(
                    prompt="去除文字", base_image_url=url, request_timeout=1, **args
                )
            stats = _settled(emu, 1)
    finally:
        slow.shutdown()
        slow.server_close()
    assert stats["submissions"]["attempts"] == 1  # not re-sent
    assert stats["submissions"]["accepted"] == 1 and stats["billed_images"] == 2  # yet paid

    # The same lost submit under wanrecipe: one task, billed once.
    Image.open(io.BytesIO(_png_bytes())).save(tmp_path / "in.png")
    path = tmp_path / "one.yaml"
    path.write_text(
        "version: 1\nname: one\nsteps:\n"
        "  a: {function: remove_watermark, image: in.png, prompt: 去除文字, parameters: {n: 2}}\n",
        encoding="utf-8",
    )
    lost = EmulatorConfig(**FAST, faults="submit.lost=first:1", executor="thread")
    with EmulatorThread(lost) as emu:
        backend = BackendChoice(kind="url", base_url=emu.base_url, api_key=KEY)
        out, state = tmp_path / "out", tmp_path / "state"
        record = asyncio.run(
            execute(load_recipe(path), backend=backend, run_dir=out, state_dir=state)
        )
        stats = _settled(emu, 1)
    assert record.status == "ok"
    assert (stats["submissions"]["attempts"], stats["submissions"]["accepted"]) == (1, 1)
    assert stats["billed_images"] == 2 == record.images_billed
