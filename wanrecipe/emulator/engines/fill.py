"""Hole filling shared by removal, watermark removal and expand.

PatchMatch (``pypatchmatch``) per hole on a region of interest at a capped working size; Telea
when PatchMatch is missing, the hole is a thin stroke, or the time budget would be exceeded.
"""

from __future__ import annotations

import threading
from types import ModuleType

import cv2
import numpy as np

from .common import Budget, working_size

#: Cap on the pixels PatchMatch works on per region (local-engines.md §1.4: ~1 MP).
PATCHMATCH_MAX_PIXELS = 700_000


def patchmatch_cost(width: int, height: int, hole_pixels: int, edge_pixels: int = 0) -> float:
    """CPU seconds PatchMatch (patch 3) takes on a region: a least-squares fit of
    ``time.process_time`` over 36 runs on four real photos (200² to 512², square holes of 2 to
    30 %), plus a term for the hole's boundary (``edge_pixels``) fitted on lines of text at
    1024² (2.4 s for 22 k hole pixels with 3 k of boundary; 0.2 s at half that size): thin,
    long holes cost far more than compact ones, and super-linearly.
    benchmarks/bench_engines.py prints the model against measured times."""
    scale = min(1.0, PATCHMATCH_MAX_PIXELS / float(width * height))
    return (
        0.12
        + (1.7e-6 * width * height + 20e-6 * hole_pixels) * scale
        + 0.15e-6 * float(edge_pixels) ** 2 * scale
    )


def edge_count(hole: np.ndarray) -> int:
    """Boundary pixels of ``hole`` (those with a non-hole 4-neighbour)."""
    inner = cv2.erode(hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    return int(hole.sum() - inner.sum())


def _load_patchmatch() -> ModuleType | None:
    try:
        from patchmatch import patch_match
    except (ImportError, OSError):  # pragma: no cover - depends on the platform's wheel
        return None
    return patch_match if getattr(patch_match, "patchmatch_available", False) else None


_PM = _load_patchmatch()
_PM_LOCK = threading.Lock()


def patchmatch_available() -> bool:
    return _PM is not None


def telea(rgb: np.ndarray, hole: np.ndarray, radius: int = 5) -> np.ndarray:
    mask = hole.astype(np.uint8) * 255
    return cv2.inpaint(rgb, mask, radius, cv2.INPAINT_TELEA)


def _patchmatch(
    rgb: np.ndarray, hole: np.ndarray, seed: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """PatchMatch fill of ``hole``; pixels of ``exclude`` are never copied from (pypatchmatch's
    ``global_mask``: neither filled nor a source)."""
    assert _PM is not None
    mask = np.ascontiguousarray(hole.astype(np.uint8)[..., None] * 255)
    extra = {}
    if exclude is not None and exclude.any():
        extra["global_mask"] = np.ascontiguousarray(
            (exclude & ~hole).astype(np.uint8)[..., None] * 255
        )
    # The library's seed is process-global: with a thread-pool emulator, seeding and inpainting
    # must not interleave between threads, or outputs stop being deterministic.
    with _PM_LOCK:
        _PM.set_random_seed(seed & 0xFFFFFFFF)
        out = _PM.inpaint(np.ascontiguousarray(rgb), mask, patch_size=3, **extra)
    return np.asarray(out, np.uint8)


def _roi(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    # Sources close by: PatchMatch's cost grows with the region, its results barely with a
    # wider band (lines of text are thin).
    band = max(32, min(w, h))
    x0, y0 = max(0, x - band), max(0, y - band)
    x1, y1 = min(shape[1], x + w + band), min(shape[0], y + h + band)
    return x0, y0, x1, y1


def _thin(hole: np.ndarray) -> bool:
    """Strokes a few pixels wide: Telea is as good as PatchMatch there, and far cheaper."""
    dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    return float(dist.max()) <= 3.0


def fill_region(
    rgb: np.ndarray,
    hole: np.ndarray,
    seed: int,
    max_pixels: int = PATCHMATCH_MAX_PIXELS,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """PatchMatch on the whole of ``rgb`` at a working size of at most ``max_pixels``; only
    hole pixels of the result differ from ``rgb``. ``exclude`` pixels are never sources."""
    h, w = hole.shape
    ww, wh, scale = working_size(w, h, max_pixels)
    if scale < 1.0:
        small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole.astype(np.uint8), (ww, wh), interpolation=cv2.INTER_AREA) > 0
        small_ex = None
        if exclude is not None:
            small_ex = (
                cv2.resize(exclude.astype(np.uint8), (ww, wh), interpolation=cv2.INTER_NEAREST) > 0
            )
        filled = cv2.resize(
            _patchmatch(small, small_hole, seed, small_ex), (w, h), interpolation=cv2.INTER_CUBIC
        )
    else:
        filled = _patchmatch(rgb, hole, seed, exclude)
    out = rgb.copy()
    out[hole] = filled[hole]
    return out


def fill_holes(
    rgb: np.ndarray, hole: np.ndarray, seed: int, budget: Budget, *, grow: int = 2
) -> tuple[np.ndarray, str]:
    """Fill ``hole`` (HxW bool). Returns the image and the method used ("patchmatch", "telea",
    "patchmatch+telea(budget)" when the budget ran out part-way, or "none" for an empty hole).
    A method naming "budget" is a fallback: label such a result ``approximate``."""
    if not hole.any():
        return rgb.copy(), "none"
    if grow:
        # Antialiased object edges sit just outside a tight mask; take them out too.
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        hole = cv2.dilate(hole.astype(np.uint8), k) > 0
    if _PM is None or _thin(hole):
        return telea(rgb, hole), "telea"
    # Group nearby holes so each PatchMatch run sees its neighbours' surroundings.
    grouped = cv2.dilate(hole.astype(np.uint8), np.ones((33, 33), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    out = rgb.copy()
    used: set[str] = set()
    order = sorted(range(1, count), key=lambda i: (int(stats[i, 1]), int(stats[i, 0])))
    for i in order:
        x0, y0, x1, y1 = _roi(tuple(int(v) for v in stats[i, :4]), rgb.shape)  # type: ignore[arg-type]
        part = hole[y0:y1, x0:x1] & (labels[y0:y1, x0:x1] == i)
        region = out[y0:y1, x0:x1]
        rw, rh = region.shape[1], region.shape[0]
        holes, edges = int(part.sum()), edge_count(part)
        # The other holes in this region are never sources (no mark is copied over a mark).
        others = hole[y0:y1, x0:x1] & ~part
        if budget.allow(patchmatch_cost(rw, rh, holes, edges)):
            out[y0:y1, x0:x1] = fill_region(region, part, seed + i, exclude=others)
            used.add("patchmatch")
        elif budget.allow(patchmatch_cost(rw // 2, rh // 2, holes // 4, edges // 2)):
            # At half size: a quarter of the work, detail in the hole a little softer.
            out[y0:y1, x0:x1] = fill_region(
                region, part, seed + i, max(1, rw * rh // 4), exclude=others
            )
            used.add("patchmatch(1/2)")
        else:
            out[y0:y1, x0:x1] = telea(region, part)
            used.add("telea(budget)")
    return out, "+".join(sorted(used))
