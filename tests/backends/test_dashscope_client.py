"""DashScopeClient against the real emulator (and a recording server) over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from wanrecipe import wire
from wanrecipe.backends import DashScopeClient, TaskState
from wanrecipe.errors import BackendError, TransportError
from wanrecipe.executor.retry import ErrorClass, classify, read_retryable, submit_is_retryable

from .backend_helpers import KEY, Recorder, Start, data_uri, png


async def finish(client: DashScopeClient, task_id: str, timeout: float = 20.0) -> TaskState:
    end = asyncio.get_running_loop().time() + timeout
    while True:
        state = await client.query(task_id)
        if state.terminal:
            return state
        assert asyncio.get_running_loop().time() < end, state.status
        await asyncio.sleep(0.02)


async def test_submit_query_download_round_trip(client: DashScopeClient, tmp_path: Path) -> None:
    sub = await client.submit("remove_watermark", "blue sky", data_uri(png()), parameters={"n": 2})
    assert sub.task_id and sub.request_id and sub.status == "PENDING"
    state = await finish(client, sub.task_id)
    assert state.status == "SUCCEEDED", state
    assert state.task_id == sub.task_id
    assert len(state.results) == 2 and all(r.ok for r in state.results)
    assert state.image_count == 2
    assert state.task_metrics == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert state.submit_time and state.scheduled_time and state.end_time
    assert state.run_seconds is not None and state.run_seconds >= 0
    # The raw copy is redacted: no result URL signature survives in it.
    assert "Signature=" not in json.dumps(state.raw)
    assert "Signature=" not in repr(state)

    got = await client.download(state.results[0].url or "", tmp_path / "out.png", max_bytes=10**8)
    data = (tmp_path / "out.png").read_bytes()
    assert got.size == len(data) and got.sha256 == hashlib.sha256(data).hexdigest()
    assert data.startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file left


async def test_a_large_data_uri_submit_does_not_warn(client: DashScopeClient) -> None:
    """A body over aiohttp's 1 MiB "large raw bytes" mark (a ~1.5 MB photo as a data URI) is
    streamed, not sent as raw bytes: the suite turns aiohttp's ResourceWarning into an error,
    and on a user's machine it would block the loop."""
    noisy = np.random.default_rng(1).integers(0, 256, (720, 720, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG", compress_level=1)
    assert len(buf.getvalue()) > 1024 * 1024
    sub = await client.submit("super_resolution", "x", data_uri(buf.getvalue()))
    state = await finish(client, sub.task_id)
    assert state.status == "SUCCEEDED", state


async def test_download_over_the_cap_leaves_nothing(
    client: DashScopeClient, tmp_path: Path
) -> None:
    sub = await client.submit("remove_watermark", "", data_uri(png()))
    state = await finish(client, sub.task_id)
    url = state.urls[0]
    with pytest.raises(BackendError) as info:
        await client.download(url, tmp_path / "big.png", max_bytes=100)
    assert info.value.code == "DownloadTooLarge"
    assert "Signature" not in str(info.value) and "Expires" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


async def test_failed_task_reports_its_code(start: Start) -> None:
    async with (
        start(faults="task.inspection=first:1") as emu,
        DashScopeClient(emu.base_url, KEY) as client,
    ):
        sub = await client.submit("remove_watermark", "x", data_uri(png()))
        state = await finish(client, sub.task_id)
    assert state.status == "FAILED"
    assert state.code == "DataInspectionFailed" and state.message
    assert state.results == () and state.image_count is None


async def test_unknown_task_is_unknown(client: DashScopeClient) -> None:
    state = await client.query("no-such-task")
    assert state.status == "UNKNOWN" and state.terminal


async def test_wrong_key_is_refused_without_leaking_it(emu: object, start: Start) -> None:
    async with start() as emu2, DashScopeClient(emu2.base_url, "sk-wrongwrongwrong1") as client:
        with pytest.raises(BackendError) as info:
            await client.submit("remove_watermark", "x", data_uri(png()))
    err = info.value
    assert (err.status, err.code) == (401, "InvalidApiKey")
    assert not isinstance(err, TransportError)
    assert "sk-wrong" not in str(err) and "sk-wrong" not in repr(err.args)
    assert classify(err) is ErrorClass.CLIENT and not submit_is_retryable(err)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("submit.429", 429, "Throttling.RateQuota"), ("submit.500", 500, "InternalError")],
)
async def test_refused_submit_is_safe_to_retry(
    start: Start, fault: str, status: int, code: str
) -> None:
    async with (
        start(faults=f"{fault}=first:1") as emu,
        DashScopeClient(emu.base_url, KEY) as client,
    ):
        with pytest.raises(BackendError) as info:
            await client.submit("remove_watermark", "x", data_uri(png()))
        assert (info.value.status, info.value.code) == (status, code)
        assert info.value.request_id
        assert submit_is_retryable(info.value)
        # The retry goes through and the emulator created exactly one task.
        await client.submit("remove_watermark", "x", data_uri(png()))
        assert emu.stats()["submissions"]["accepted"] == 1


@pytest.mark.parametrize("fault", ["submit.drop", "submit.lost"])
async def test_dropped_submit_is_not_safe_to_retry(start: Start, fault: str) -> None:
    async with (
        start(faults=f"{fault}=first:1") as emu,
        DashScopeClient(emu.base_url, KEY) as client,
    ):
        with pytest.raises(TransportError) as info:
            await client.submit("remove_watermark", "x", data_uri(png()))
        # Sent once: neither we nor aiohttp silently re-send a POST (it could bill twice).
        assert emu.stats()["submissions"]["attempts"] == 1
    err = info.value
    assert err.reached_server is None
    assert classify(err) is ErrorClass.UNCERTAIN
    assert not submit_is_retryable(err)
    assert isinstance(err.__cause__, Exception)


async def test_connection_refused_surely_never_reached() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        async with DashScopeClient(f"http://127.0.0.1:{port}/api/v1", KEY) as client:
            with pytest.raises(TransportError) as info:
                await client.submit("remove_watermark", "x", "https://example.invalid/a.png")
    err = info.value
    assert err.code == "ConnectError" and err.reached_server is False
    assert submit_is_retryable(err)
    assert KEY not in str(err)


async def test_read_timeout_may_have_reached(recorder: Recorder) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)  # well past the client timeout; short teardown
        return web.json_response({})

    recorder.routes["/api/v1" + wire.SUBMIT_PATH] = stall
    async with DashScopeClient(recorder.base_url, KEY, timeout=0.3) as client:
        with pytest.raises(TransportError) as info:
            await client.submit("remove_watermark", "x", "https://example.invalid/a.png")
    err = info.value
    assert err.code in ("ReadTimeout", "Timeout") and err.reached_server is None
    assert not submit_is_retryable(err) and read_retryable(err)


async def test_request_is_exactly_what_the_sdk_sends(recorder: Recorder) -> None:
    recorder.routes["/api/v1" + wire.SUBMIT_PATH] = lambda r: web.json_response(
        {"request_id": "r1", "output": {"task_id": "t1", "task_status": "PENDING"}}
    )
    async with DashScopeClient(recorder.base_url, KEY, user_agent="ua/1") as client:
        sub = await client.submit(
            "description_edit_with_mask",
            "一只猫",
            "oss://dir/a.png",
            "data:image/png;base64,AAAA",
            {"n": 1, "seed": 7},
        )
    assert (sub.task_id, sub.request_id, sub.status) == ("t1", "r1", "PENDING")
    (req,) = recorder.requests
    assert req.method == "POST" and req.path == "/api/v1" + wire.SUBMIT_PATH
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["X-DashScope-Async"] == "enable"
    assert req.headers["X-DashScope-OssResourceResolve"] == "enable"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"] == "ua/1"
    body = json.loads(req.body)
    assert list(body) == ["model", "parameters", "input"]
    assert body == {
        "model": wire.MODEL,
        "parameters": {"n": 1, "seed": 7},
        "input": {
            "function": "description_edit_with_mask",
            "prompt": "一只猫",
            "base_image_url": "oss://dir/a.png",
            "mask_image_url": "data:image/png;base64,AAAA",
        },
    }
    assert "一只猫".encode() in req.body  # UTF-8, not \u escapes, like the SDK


async def test_no_oss_header_for_plain_urls(recorder: Recorder) -> None:
    recorder.routes["/api/v1" + wire.SUBMIT_PATH] = lambda r: web.json_response(
        {"request_id": "r1", "output": {"task_id": "t1", "task_status": "PENDING"}}
    )
    async with DashScopeClient(recorder.base_url, KEY) as client:
        await client.submit("remove_watermark", "x", "https://example.invalid/a.png")
    assert "X-DashScope-OssResourceResolve" not in recorder.requests[0].headers
    assert json.loads(recorder.requests[0].body)["parameters"] == {}


@pytest.mark.parametrize(
    ("answer", "code", "reached"),
    [
        (lambda: web.Response(status=502, text="<html>Bad Gateway</html>"), "HTTP502", None),
        (lambda: web.json_response({"hello": 1}), "MalformedResponse", True),
        (lambda: web.Response(status=200, text="not json"), "MalformedResponse", True),
    ],
)
async def test_unusable_answers_are_transport_errors(
    recorder: Recorder, answer: object, code: str, reached: bool | None
) -> None:
    recorder.routes["/api/v1" + wire.SUBMIT_PATH] = lambda r: answer()  # type: ignore[operator]
    async with DashScopeClient(recorder.base_url, KEY) as client:
        with pytest.raises(TransportError) as info:
            await client.submit("remove_watermark", "x", "https://example.invalid/a.png")
    assert info.value.code == code and info.value.reached_server is reached
    assert not submit_is_retryable(info.value)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("query.503", 503, "ServiceUnavailable"),
        ("query.504", 504, "GatewayTimeout"),
        ("query.500", 500, "InternalError"),
    ],
)
async def test_query_faults_are_retryable(start: Start, fault: str, status: int, code: str) -> None:
    async with (
        start(faults=f"{fault}=first:1") as emu,
        DashScopeClient(emu.base_url, KEY) as client,
    ):
        sub = await client.submit("remove_watermark", "x", data_uri(png()))
        with pytest.raises(BackendError) as info:
            await client.query(sub.task_id)
        assert (info.value.status, info.value.code) == (status, code)
        assert info.value.task_id == sub.task_id
        assert read_retryable(info.value)
        assert (await finish(client, sub.task_id)).status == "SUCCEEDED"


@pytest.mark.parametrize(
    ("fault", "status", "retry"),
    [("download.500", 500, True), ("download.expired", 403, False)],
)
async def test_download_faults(
    start: Start, tmp_path: Path, fault: str, status: int, retry: bool
) -> None:
    async with (
        start(faults=f"{fault}=first:1") as emu,
        DashScopeClient(emu.base_url, KEY) as client,
    ):
        state = await finish(
            client, (await client.submit("remove_watermark", "", data_uri(png()))).task_id
        )
        with pytest.raises(BackendError) as info:
            await client.download(state.urls[0], tmp_path / "a.png", max_bytes=10**8)
        assert info.value.status == status and read_retryable(info.value) is retry
        assert "Signature=" not in str(info.value)
        assert list(tmp_path.iterdir()) == []
        # The same URL works once the fault has passed.
        got = await client.download(state.urls[0], tmp_path / "a.png", max_bytes=10**8)
        assert got.size > 0


async def test_upload_then_submit_oss_url(client: DashScopeClient, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(png(600, 520))
    url = await client.upload(path)
    assert url.startswith("oss://") and url.endswith("/photo.png")
    sub = await client.submit("super_resolution", "sharpen", url, parameters={"upscale_factor": 1})
    state = await finish(client, sub.task_id)
    assert state.status == "SUCCEEDED", state.code


async def test_upload_form_matches_the_sdk(recorder: Recorder) -> None:
    recorder.routes["/api/v1/uploads"] = lambda r: web.json_response(
        {
            "request_id": "r",
            "data": {
                "policy": "cG9saWN5",
                "signature": "c2ln",
                "upload_dir": "dashscope-instant/abc",
                "upload_host": recorder.origin + "/oss",
                "expire_in_seconds": 300,
                "oss_access_key_id": "LTAIx",
                "x_oss_object_acl": "private",
                "x_oss_forbid_overwrite": "true",
            },
        }
    )

    def oss(request: web.Request) -> web.Response:
        # The recorder already read the body: take the multipart parts from its bytes.
        body = recorder.requests[-1].body.decode("latin-1")
        parts = re.findall(
            r'name="([^"]+)"(?:; filename="[^"]*")?\r\n(?:[^\r\n]+\r\n)*\r\n([^\r]*)', body
        )
        recorder.requests[-1].form = [(k, v) for k, v in parts]
        return web.Response(status=200)

    recorder.routes["/oss"] = oss
    async with DashScopeClient(recorder.base_url, KEY) as client:
        first = await client.upload(b"\x89PNG fake", "a.png")
        second = await client.upload(b"\x89PNG fake", "b.png")
    assert (first, second) == (
        "oss://dashscope-instant/abc/a.png",
        "oss://dashscope-instant/abc/b.png",
    )
    policy_gets = [r for r in recorder.requests if r.path == "/api/v1/uploads"]
    assert len(policy_gets) == 1  # the policy is reused while it lives
    assert policy_gets[0].query == {"action": "getPolicy", "model": wire.MODEL}
    assert policy_gets[0].headers["Authorization"] == f"Bearer {KEY}"
    post = next(r for r in recorder.requests if r.path == "/oss")
    assert "Authorization" not in post.headers
    names = [k for k, _ in post.form]
    assert names == [
        "OSSAccessKeyId", "Signature", "policy", "key", "x-oss-object-acl",
        "x-oss-forbid-overwrite", "success_action_status", "x-oss-content-type", "file",
    ]  # fmt: skip
    form = dict(post.form)
    assert form["key"] == "dashscope-instant/abc/a.png"
    assert form["success_action_status"] == "200" and form["x-oss-content-type"] == "image/png"


async def test_cancel_and_list(start: Start) -> None:
    async with (
        start(latency=30.0, concurrency=1) as emu,  # outlasts the calls; nothing waits for it
        DashScopeClient(emu.base_url, KEY) as client,
    ):
        first = await client.submit("remove_watermark", "x", data_uri(png()))
        second = await client.submit("remove_watermark", "x", data_uri(png()))
        assert (await client.query(second.task_id)).status == "PENDING"
        await client.cancel(second.task_id)
        assert (await client.query(second.task_id)).status == "CANCELED"
        with pytest.raises(BackendError) as info:
            await client.cancel(first.task_id)  # RUNNING: only PENDING tasks can be cancelled
        assert info.value.status == 400 and info.value.task_id == first.task_id
        page = await client.list_tasks(page_size=10)
        assert page.total == 2 and {t["task_id"] for t in page.tasks} == {
            first.task_id,
            second.task_id,
        }
        canceled = await client.list_tasks(status="CANCELED", model_name=wire.MODEL)
        assert [t["task_id"] for t in canceled.tasks] == [second.task_id]


async def test_client_outside_context_is_an_error() -> None:
    client = DashScopeClient("http://127.0.0.1:9/api/v1", KEY)
    with pytest.raises(RuntimeError):
        await client.query("x")
    assert KEY not in repr(client)


async def test_download_sends_no_credentials_and_keeps_the_signature(
    recorder: Recorder, tmp_path: Path
) -> None:
    data = png(520, 520)
    recorder.routes["/results/a.png"] = lambda r: web.Response(body=data, content_type="image/png")
    # An OSS-style signature: percent-escapes must reach the server exactly as given.
    url = recorder.origin + "/results/a.png?Expires=1700000000&Signature=ab%2Bc%2Fd%3D&x=1"
    async with DashScopeClient(recorder.base_url, KEY) as client:
        got = await client.download(url, tmp_path / "sub" / "a.png", max_bytes=len(data))
    (req,) = recorder.requests
    assert "Authorization" not in req.headers
    assert req.raw_query == "Expires=1700000000&Signature=ab%2Bc%2Fd%3D&x=1"
    assert got.size == len(data) and (tmp_path / "sub" / "a.png").read_bytes() == data
