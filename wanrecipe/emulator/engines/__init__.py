"""Engines: perform one edit on the CPU.

The emulator calls :func:`render` in a worker process, one call per output image. Everything
crossing that boundary is plain bytes and builtins so it pickles cheaply.

This module holds the interface and the geometry rules; the per-function engines live in the
modules beside it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image, PngImagePlugin

Fidelity = Literal["real", "approximate", "placeholder"]

#: Default cap on output pixels (about 64 MP); the emulator refuses bigger outputs with
#: InvalidParameter. What the real service does there is unknown (local-engines.md §3).
DEFAULT_MAX_OUTPUT_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True)
class EditRequest:
    function: str
    image: bytes  # the encoded input image as received
    prompt: str
    parameters: Mapping[str, Any]  # validated, defaults filled in
    seed: int  # the seed for this output (already derived from the task seed and index)
    index: int = 0  # which of the n outputs
    mask: bytes | None = None
    badge: bool = False  # draw a visible fidelity badge


@dataclass(frozen=True)
class EditResult:
    png: bytes
    width: int
    height: int
    fidelity: Fidelity
    engine: str
    notes: dict[str, str] = field(default_factory=dict)


def output_size(function: str, width: int, height: int, parameters: Mapping[str, Any]) -> tuple[int, int]:
    """The size of an output image, from the input size and parameters (local-engines.md §3)."""
    if function == "expand":
        left = float(parameters.get("left_scale", 1.0))
        right = float(parameters.get("right_scale", 1.0))
        top = float(parameters.get("top_scale", 1.0))
        bottom = float(parameters.get("bottom_scale", 1.0))
        pad_l, pad_r = round(width * (left - 1) / 2), round(width * (right - 1) / 2)
        pad_t, pad_b = round(height * (top - 1) / 2), round(height * (bottom - 1) / 2)
        return width + pad_l + pad_r, height + pad_t + pad_b
    if function == "super_resolution":
        factor = int(parameters.get("upscale_factor", 1))
        return width * factor, height * factor
    return width, height


def derive_seed(seed: int, index: int) -> int:
    """The seed for output ``index`` of a task seeded with ``seed``: stable and distinct."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def render(request: EditRequest) -> EditResult:
    """Perform the edit. Placeholder until the engines land: a correctly sized, deterministic
    image made from the input, labelled ``placeholder``."""
    with Image.open(io.BytesIO(request.image)) as im:
        im.draft("RGB", im.size)
        rgb = im.convert("RGB")
    size = output_size(request.function, rgb.width, rgb.height, request.parameters)
    out = rgb.resize(size, Image.Resampling.BILINEAR) if size != rgb.size else rgb
    info = PngImagePlugin.PngInfo()
    info.add_text("wanrecipe:fidelity", "placeholder")
    info.add_text("wanrecipe:engine", "resize")
    buf = io.BytesIO()
    out.save(buf, format="PNG", pnginfo=info, compress_level=1)
    return EditResult(buf.getvalue(), out.width, out.height, "placeholder", "resize")
