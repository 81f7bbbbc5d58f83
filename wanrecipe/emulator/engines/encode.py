"""PNG output: fidelity text chunks, the service's "AI生成" mark and the optional badge."""

from __future__ import annotations

import io
import json
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import labels as chunks
from .common import Fidelity

#: Above this many pixels PNG is written at zlib level 1: level 6 costs ~5x the time at 4096²
#: for ~15 % smaller files (local-engines.md §3).
FAST_PNG_PIXELS = 1024 * 1024
#: Above this, zlib itself is the cost (1.2 s for 4096² even at level 1): OpenCV's libpng with
#: the Huffman-only strategy writes it in ~0.7 s, and smaller than Pillow at level 1.
HUGE_PNG_PIXELS = 8 * 1024 * 1024

TEXT_KEY = "wanrecipe-emulator"


@lru_cache(maxsize=1)
def _mark_alpha() -> Image.Image:
    data = resources.files(__package__).joinpath("data/ai_mark.png").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("L")


def draw_ai_mark(img: Image.Image) -> None:
    """Draw "AI生成" bottom-right, as the service does for ``watermark: true``."""
    alpha = _mark_alpha()
    height = max(14, round(min(img.size) * 0.035))
    width = round(alpha.width * height / alpha.height)
    mark = alpha.resize((width, height), Image.Resampling.LANCZOS)
    margin = max(6, height // 2)
    x, y = img.width - width - margin, img.height - height - margin
    shadow = mark.point(lambda v: v * 0.45)
    img.paste((0, 0, 0), (x + 1, y + 1), shadow)
    img.paste((255, 255, 255), (x, y), mark.point(lambda v: v * 0.85))


def draw_badge(img: Image.Image, fidelity: Fidelity, engine: str) -> None:
    """A small top-left label saying the image was emulated, and how faithfully."""
    size = max(12, round(min(img.size) * 0.022))
    font = ImageFont.load_default(size=size)
    text = f"emulated: {fidelity} ({engine})"
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(3, size // 3)
    colour = {"real": (40, 120, 60), "approximate": (170, 110, 20), "placeholder": (170, 40, 40)}
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=colour[fidelity])
    draw.text((pad - left, pad - top), text, font=font, fill=(255, 255, 255))


def encode_png(
    rgb: np.ndarray,
    *,
    function: str,
    fidelity: Fidelity,
    engine: str,
    notes: dict[str, str],
    note: str = "",
    watermark: bool = False,
    badge: bool = False,
) -> bytes:
    """A PNG of ``rgb`` whose first chunks after IHDR are the engine labels (labels.py), then
    an iTXt ``wanrecipe-emulator`` JSON with the function, the labels and the engine's notes."""
    payload = {"function": function, "engine": engine, "fidelity": fidelity, **notes}
    if note:
        payload["note"] = chunks.one_line(note)
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    height, width = rgb.shape[:2]
    pixels = width * height
    if watermark or badge:
        img = Image.fromarray(rgb, "RGB")
        if watermark:
            draw_ai_mark(img)
        if badge:
            draw_badge(img, fidelity, engine)
        rgb = np.asarray(img)
    if pixels > HUGE_PNG_PIXELS:
        # OpenCV straight from the engine's array: no copy through Pillow.
        ok, encoded = cv2.imencode(
            ".png",
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
             cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY],
        )  # fmt: skip
        if not ok:
            raise RuntimeError("PNG encoding failed")
        data = encoded.data.cast("B")  # the encoder's buffer, not a copy
    else:
        buf = io.BytesIO()
        level = 1 if pixels > FAST_PNG_PIXELS else 6
        Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=level)
        data = memoryview(buf.getvalue())
    # The label chunks right after the signature and IHDR (8 + 25 bytes).
    head = chunks.label_chunks(fidelity, engine, note or engine) + chunks.chunk(
        b"iTXt", TEXT_KEY.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")
    )
    return b"".join((data[:33], head, data[33:]))


def read_labels(png: bytes) -> dict[str, str]:
    """Every text chunk of a PNG this module wrote (for tests and the server's logs)."""
    with Image.open(io.BytesIO(png)) as im:
        text = dict(getattr(im, "text", {}))
    return {str(k): str(v) for k, v in text.items()}
