"""The runner end to end against a real emulator over loopback."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from wanrecipe.api import load_recipe
from wanrecipe.emulator.server import RunningEmulator
from wanrecipe.report.events import Event
from wanrecipe.report.record import RunRecord
from wanrecipe.runner import BackendChoice, execute

from .conftest import fast_options, make_image


async def run(
    path: Path, emu: RunningEmulator, events: list[Event] | None = None, **options: Any
) -> RunRecord:
    recipe = load_recipe(path)
    sink = events.append if events is not None else (lambda e: None)
    return await execute(
        recipe,
        backend=BackendChoice("url", emu.base_url),
        run_dir=path.parent / "run",
        options=fast_options(**options),
        on_event=sink,
    )


def assert_quota_kept(emu: RunningEmulator) -> dict[str, Any]:
    stats = emu.stats()
    assert stats["tasks"]["peak_running"] <= 2, stats["tasks"]
    assert stats["submissions"]["peak_accepted_1s"] <= 2, stats["submissions"]
    assert stats["submissions"]["refused_by_code"].get("Throttling.RateQuota", 0) == 0
    assert stats["submissions"]["refused_by_code"].get("Throttling.AllocationQuota", 0) == 0
    return stats


CHAIN = """\
    version: 1
    name: chain
    steps:
      colorize:
        function: colorization
        image: in.png
        prompt: blue sky
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: sharper
        parameters: {upscale_factor: 2}
      widen:
        function: expand
        image: "{{ steps.upscale.image }}"
        prompt: a valley
        parameters: {left_scale: 1.5, right_scale: 1.5}
    outputs:
      final: "{{ steps.widen.image }}"
"""


async def test_chain_feeds_each_output_into_the_next(emulator, recipe_file):
    path = recipe_file(CHAIN)
    events: list[Event] = []
    async with emulator(over_concurrency="reject") as emu:
        record = await run(path, emu, events)
        stats = assert_quota_kept(emu)
    run_dir = path.parent / "run"
    assert record.status == "ok"
    assert [s.state for s in record.steps.values()] == ["done", "done", "done"]
    with Image.open(run_dir / "upscale.png") as im:
        assert im.size == (1024, 1024)
    with Image.open(run_dir / "widen.png") as im:
        assert im.size == (1536, 1024)
    assert record.images_billed == 3 == stats["billed_images"]
    assert str(record.cost_usd) == "0.060210"
    assert record.outputs == {"final": [str(run_dir / "widen.png")]}
    # The second step was sent the first one's live result URL, not a copy.
    sent = record.steps["upscale"].attempts[0].request["input"]["base_image_url"]
    assert sent.startswith(emu.base_url.removesuffix("/api/v1") + "/results/")
    assert sent.endswith("?<redacted>")
    # run.json is the record, and every file it names has the recorded hash.
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["status"] == "ok" and saved["images_billed"] == 3
    for step in saved["steps"].values():
        for result in step["results"]:
            data = (run_dir / result["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == result["sha256"]
            assert len(data) == result["size"]
    states = [(e.step, e.state) for e in events if e.kind == "step"]
    assert states.index(("colorize", "done")) < states.index(("upscale", "submitted"))
    assert events[0].kind == "run_started" and events[-1].kind == "run_finished"


async def test_parallel_branches_and_several_outputs(emulator, recipe_file):
    path = recipe_file("""\
        version: 1
        name: fan
        steps:
          paint:
            function: stylization_all
            image: in.png
            prompt: French picture book style
            parameters: {n: 3, strength: 0.7}
          night:
            function: description_edit
            image: in.png
            prompt: make it night
          clean:
            function: remove_watermark
            image: in.png
            prompt: remove the text
          both:
            function: super_resolution
            image: "{{ steps.paint.images[2] }}"
            prompt: sharper
            needs: [night]
        outputs:
          paintings: "{{ steps.paint.images }}"
    """)
    async with emulator(over_concurrency="reject") as emu:
        record = await run(path, emu)
        assert_quota_kept(emu)
    run_dir = path.parent / "run"
    assert record.status == "ok"
    assert [r.path for r in record.steps["paint"].results] == [
        "paint.png",
        "paint-2.png",
        "paint-3.png",
    ]
    assert record.images_billed == 6
    assert len(record.outputs["paintings"]) == 3
    # `both` used the third painting, and ran only after `night` (needs:).
    assert record.steps["both"].started_at >= record.steps["night"].finished_at
    assert (run_dir / "both.png").exists()


@contextlib.asynccontextmanager
async def static_server(files: dict[str, bytes]) -> AsyncIterator[str]:
    """A plain web server on 127.0.0.1 serving ``files`` (an image host the emulator fetches)."""

    async def handle(request: web.Request) -> web.Response:
        data = files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_every_input_kind(emulator, recipe_file, tmp_path):
    big = make_image(tmp_path / "big.png", (600, 600))
    small = (tmp_path / "in.png").read_bytes()
    data_uri = "data:image/png;base64," + base64.b64encode(small).decode()
    async with emulator() as emu, static_server({"pic.png": small}) as host:
        path = recipe_file(f"""\
            version: 1
            name: inputs
            params:
              picture: {{type: image, default: big.png}}
            steps:
              inline: {{function: colorization, image: in.png, prompt: ""}}
              upload: {{function: colorization, image: "{{{{ params.picture }}}}", prompt: ""}}
              datauri: {{function: colorization, image: "{data_uri}", prompt: ""}}
              url: {{function: colorization, image: "{host}/pic.png?token=secret", prompt: ""}}
        """)
        record = await run(path, emu, upload_threshold=big.stat().st_size - 1)
        stats = emu.stats()
    assert record.status == "ok", {k: s.error for k, s in record.steps.items()}
    shown = {k: s.attempts[0].request["input"]["base_image_url"] for k, s in record.steps.items()}
    assert shown["inline"].endswith("in.png (data URI)")
    assert "uploaded as oss://" in shown["upload"]
    assert shown["datauri"].startswith("data:image/png;base64,<")
    assert shown["url"] == f"{host}/pic.png?<redacted>"
    assert "secret" not in (path.parent / "run" / "run.json").read_text()
    assert stats["uploads"] == 1
    for step in record.steps.values():
        assert (step.results[0].width, step.results[0].height) in ((512, 512), (600, 600))


async def test_a_cancelled_run_still_leaves_its_record(emulator, recipe_file):
    import asyncio

    path = recipe_file(CHAIN)
    events: list[Event] = []
    async with emulator(latency=1.0) as emu:
        task = asyncio.ensure_future(run(path, emu, events))
        while not any(e.step == "upscale" and e.state == "submitted" for e in events):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    saved = json.loads((path.parent / "run" / "run.json").read_text())
    assert saved["status"] == "interrupted"
    assert saved["steps"]["colorize"]["state"] == "done"
    assert (path.parent / "run" / "colorize.png").exists()
