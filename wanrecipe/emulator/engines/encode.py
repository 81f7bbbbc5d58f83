"""PNG output: fidelity text chunks, the service's "AI生成" mark and the optional badge."""

from __future__ import annotations

import io
import json
from functools import lru_cache
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from .common import Fidelity

#: Above this many pixels PNG is written at zlib level 1: level 6 costs ~5x the time at 4096²
#: for ~15 % smaller files (local-engines.md §3).
FAST_PNG_PIXELS = 1024 * 1024

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
    watermark: bool = False,
    badge: bool = False,
) -> bytes:
    img = Image.fromarray(rgb, "RGB")
    if watermark:
        draw_ai_mark(img)
    if badge:
        draw_badge(img, fidelity, engine)
    info = PngImagePlugin.PngInfo()
    info.add_text("wanrecipe:fidelity", fidelity)
    info.add_text("wanrecipe:engine", engine)
    payload = {"function": function, "engine": engine, "fidelity": fidelity, **notes}
    info.add_itxt(TEXT_KEY, json.dumps(payload, ensure_ascii=False, sort_keys=True))
    level = 1 if img.width * img.height > FAST_PNG_PIXELS else 6
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, compress_level=level)
    return buf.getvalue()


def read_labels(png: bytes) -> dict[str, str]:
    """The text chunks of a PNG this module wrote (for tests and the server's logs)."""
    with Image.open(io.BytesIO(png)) as im:
        text = dict(getattr(im, "text", {}))
    return {str(k): str(v) for k, v in text.items()}
