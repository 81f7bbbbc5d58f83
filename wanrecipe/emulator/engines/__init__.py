"""Engines: perform one edit on the CPU.

The emulator calls :func:`render` in a worker process, one call per output image. Everything
crossing that boundary is plain bytes and builtins so it pickles cheaply.

This module holds the interface, the geometry rules and the dispatch; the per-function engines
live in the modules beside it (docs/engines.md says what each really does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from wanrecipe import wire
from wanrecipe.errors import ImageInputError

if TYPE_CHECKING:
    from .common import Job, Outcome

Fidelity = Literal["real", "approximate", "placeholder"]

#: Default cap on output pixels (about 64 MP); the emulator refuses bigger outputs with
#: InvalidParameter. What the real service does there is unknown (local-engines.md §3).
DEFAULT_MAX_OUTPUT_PIXELS = 64 * 1024 * 1024


#: Per-function budgets (predicted CPU seconds) for the heavy steps, sized to the targets at
#: 1024² (docs/engines.md): expand <= 6 CPU-s, the others <= 2 (text detection comes first).
DEFAULT_TIME_BUDGETS: Mapping[str, float] = {"expand": 5.0, "remove_watermark": 1.6}


class OutputTooLargeError(ImageInputError):
    """The requested output would exceed the configured pixel cap."""


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
    #: Refuse (OutputTooLargeError) outputs above this many pixels; the server checks first.
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS
    #: Seconds of heavy work allowed, spent on predicted costs (not the wall clock, so output
    #: stays deterministic); past it heavy steps take their fast path. None = per function.
    time_budget: float | None = None


@dataclass(frozen=True)
class EditResult:
    png: bytes
    width: int
    height: int
    fidelity: Fidelity
    engine: str
    notes: dict[str, str] = field(default_factory=dict)
    #: One line: what the engine did (also the PNG's ``wanrecipe:note`` chunk).
    note: str = ""


def output_size(
    function: str, width: int, height: int, parameters: Mapping[str, Any]
) -> tuple[int, int]:
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


def _engines() -> dict[str, Callable[[Job], Outcome]]:
    from . import cartoon, colorize, describe, doodle, expand, stylize, super_resolution, watermark

    return {
        "stylization_all": stylize.run_all,
        "stylization_local": stylize.run_local,
        "description_edit": describe.run_global,
        "description_edit_with_mask": describe.run_masked,
        "remove_watermark": watermark.run,
        "expand": expand.run,
        "super_resolution": super_resolution.run,
        "colorization": colorize.run,
        "doodle": doodle.run,
        "control_cartoon_feature": cartoon.run,
    }


def render(request: EditRequest) -> EditResult:
    """Perform the edit on the CPU and encode the result as a labelled PNG.

    Raises :class:`~wanrecipe.errors.ImageInputError` for undecodable or oversized inputs,
    :class:`OutputTooLargeError` when the output would exceed ``request.max_output_pixels``, and
    ``ValueError`` for an unknown function.
    """
    from .common import Budget, Job
    from .decode import decode_image, decode_mask
    from .encode import encode_png

    engines = _engines()
    if request.function not in engines:
        raise ValueError(f"unknown function {request.function!r}")
    rgb = decode_image(request.image)
    height, width = rgb.shape[:2]
    out_w, out_h = output_size(request.function, width, height, request.parameters)
    if out_w * out_h > request.max_output_pixels:
        raise OutputTooLargeError(
            f"output {out_w}x{out_h} exceeds the cap of {request.max_output_pixels} pixels"
        )
    mask = None
    if request.function in wire.MASK_FUNCTIONS:
        if request.mask is None:
            raise ImageInputError(f"{request.function} needs a mask image")
        mask = decode_mask(request.mask, (width, height))
    budget = request.time_budget
    if budget is None:
        budget = DEFAULT_TIME_BUDGETS.get(request.function, 1.5)
    job = Job(
        function=request.function,
        rgb=rgb,
        prompt=request.prompt[: wire.PROMPT_MAX_CHARS],  # the service truncates, never refuses
        parameters=request.parameters,
        seed=request.seed,
        index=request.index,
        mask=mask,
        budget=Budget(budget),
    )
    outcome = engines[request.function](job)
    result = outcome.rgb
    if (result.shape[1], result.shape[0]) != (out_w, out_h):  # pragma: no cover - engine bug guard
        raise RuntimeError(
            f"{request.function} engine returned {result.shape[1]}x{result.shape[0]}, "
            f"expected {out_w}x{out_h}"
        )
    fidelity, note = honest_label(outcome.fidelity, outcome.note or outcome.engine, rgb, result)
    png = encode_png(
        result,
        function=request.function,
        fidelity=fidelity,
        engine=outcome.engine,
        notes=outcome.notes,
        note=note,
        watermark=bool(request.parameters.get("watermark", False)),
        badge=request.badge,
    )
    return EditResult(png, out_w, out_h, fidelity, outcome.engine, dict(outcome.notes), note)


def honest_label(fidelity: Fidelity, note: str, before: Any, after: Any) -> tuple[Fidelity, str]:
    """The label an output may carry: never ``real`` when it equals its input (nothing was
    edited, whatever the engine believes), and the note then says the input came back."""
    from .labels import one_line

    same = before.shape == after.shape and bool((before == after).all())
    if same:
        if fidelity == "real":
            fidelity = "placeholder"
            note = f"placeholder: {note}"
        if "unchanged" not in note:
            note = f"{note}; input returned unchanged"
    return fidelity, one_line(note)
