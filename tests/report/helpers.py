"""Helpers of the report tests and benchmark: real runs on the emulator, batch directories
laid out per the batch-record contract, page parsing."""

from __future__ import annotations

import base64
import io
import json
import shutil
import textwrap
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from PIL import Image

from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.executor.polling import PollPolicy
from wanrecipe.executor.retry import RetryPolicy
from wanrecipe.executor.scheduler import RunOptions
from wanrecipe.report.record import RunRecord
from wanrecipe.runner import BackendChoice, run_recipe

FAST = RunOptions(
    retry=RetryPolicy(base=0.05, cap=0.2, throttle_base=0.2, throttle_cap=1.0),
    poll=PollPolicy(prior_low=0.05, prior_high=2.0, early_checks=()),
    interrupt_grace_s=5.0,
)

CHAIN = """\
    version: 1
    name: chain
    description: Colour a photo, then sharpen it; a branch restyles the colour version.
    params:
      colors: {type: string, default: blue sky}
      factor: {type: integer, default: 2}
    defaults: {seed: 7}
    steps:
      colorize:
        function: colorization
        description: Grayscale to colour.
        image: in.png
        prompt: "{{ params.colors }}"
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: Image super resolution
        parameters: {upscale_factor: "{{ params.factor }}"}
      variants:
        function: description_edit
        image: "{{ steps.colorize.image }}"
        prompt: make it brighter
        parameters: {n: 2}
    outputs:
      final: "{{ steps.upscale.image }}"
      variants: "{{ steps.variants.images }}"
"""


def make_image(path: Path, size: tuple[int, int] = (512, 512), *, gray: bool = True) -> Path:
    w, h = size
    im = Image.new("RGB", size)
    px = im.load()
    assert px is not None
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 255) // w, (y * 255) // h, ((x // 32 + y // 32) % 2) * 200)
    (im.convert("L") if gray else im).save(path)
    return path


def make_photo(path: Path, size: tuple[int, int] = (768, 512), seed: int = 0) -> Path:
    """A photo-like picture (smooth shapes, texture and sensor-like noise): its JPEG
    thumbnails weigh what a real photo's do, unlike a flat test pattern's."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        img[..., c] = 90 + 60 * np.sin(x / (37 + 11 * c)) * np.cos(y / (23 + 7 * c))
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 140)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-90, 90, 3)
    # Texture at the scale a 256 px thumbnail keeps (leaves, gravel, fabric), then sensor noise.
    coarse = rng.normal(0, 40, (h // 3, w // 3, 3)).astype(np.float32)
    img += (
        np.asarray(
            Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((w, h)),
            np.float32,
        )
        - 128
    )
    img += rng.normal(0, 14, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "in.png").exists():
        make_image(folder / "in.png")
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(
    recipe: Path,
    emu: EmulatorThread,
    run_dir: Path,
    *,
    state: Path | None = None,
    params: dict[str, Any] | None = None,
    **options: Any,
) -> RunRecord:
    """A real run through the public API against the emulator thread."""
    return run_recipe(
        recipe,
        params=params,
        backend=BackendChoice("url", emu.base_url),
        run_dir=run_dir,
        options=replace(FAST, **options),
        state_dir=state or run_dir.parent / "state",
    )


def make_batch(
    batch_dir: Path, rows: list[tuple[str, dict[str, Any], Path]], *, copy: bool = False
) -> Path:
    """A batch directory laid out per the batch-record contract, from real single runs: each
    ``(key, params, run_dir)`` becomes ``batch_dir/<key>/`` (its run.json and images, paths
    relative to it) and a row of the top-level ``"kind": "batch"`` run.json. Images are hard
    links (as the image store makes them), or with ``copy`` separate files (as rows that made
    different images have)."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    billed = 0
    first: dict[str, Any] = {}
    for index, (key, params, source) in enumerate(rows):
        record = json.loads((source / "run.json").read_text(encoding="utf-8"))
        first = first or record
        row_dir = batch_dir / key
        row_dir.mkdir()
        for step in record["steps"].values():
            for result in step["results"]:
                if copy:
                    shutil.copyfile(source / result["path"], row_dir / result["path"])
                else:
                    _link(source / result["path"], row_dir / result["path"])
        record["run_dir"] = str(row_dir)
        (row_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")
        outputs: dict[str, list[str]] = {}
        for name, paths in record["outputs"].items():
            outputs[name] = [f"{key}/{Path(p).name}" for p in paths]
        status = {"ok": "ok", "failed": "failed", "interrupted": "interrupted"}[record["status"]]
        failed = [s for s in record["steps"].values() if s["state"] == "failed"]
        entries.append(
            {
                "key": key,
                "index": index,
                "params": params,
                "status": status,
                "dir": key,
                "outputs": outputs,
                "images_billed": record["images_billed"],
                "cost_usd": record["cost_usd"],
                "error": f"{failed[0]['id']}: {failed[0]['error']['code']}" if failed else None,
            }
        )
        billed += record["images_billed"]
    batch = {
        "version": 1,
        "kind": "batch",
        "recipe": first.get("recipe", ""),
        "name": first.get("name", "batch"),
        "backend": first.get("backend", "local"),
        "started": first.get("started", ""),
        "finished": first.get("finished", ""),
        "elapsed_s": 1.0,
        "status": "failed" if any(e["status"] == "failed" for e in entries) else "ok",
        "images_billed": billed,
        "cost_usd": f"{billed * 0.02007:.6f}",
        "warnings": [],
        "rows": entries,
    }
    (batch_dir / "run.json").write_text(json.dumps(batch, indent=1), encoding="utf-8")
    return batch_dir


def _link(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, dst)


class Page(HTMLParser):
    """The tags of a page: every <img> src, every <a> href, the text, the scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs: list[dict[str, str]] = []
        self.links: list[str] = []
        self.scripts: list[dict[str, str]] = []
        self.text_parts: list[str] = []
        self.ids: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "script":
            self.scripts.append(a)

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def thumb_size(src: str) -> tuple[int, int]:
    assert src.startswith("data:image/jpeg;base64,"), src[:40]
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
        assert im.format == "JPEG"
        return im.size
