"""expand: outpainting by PatchMatch texture synthesis from the photo's own background.

1. The new border is synthesised at a reduced working size. Its sources are only pixels of the
   original near the edges being extended, never the subject (the main object, dilated) nor
   the image's interior: pypatchmatch's ``global_mask`` keeps them out, so faces and eyes are
   never cloned into the new area. If the subject fills the frame, its pixels are allowed.
2. The synthesis is upsampled, the original pasted back exactly.
3. A band along each seam is synthesised again at full resolution (PatchMatch on a strip,
   sources again only from the original's background), so the join shows no soft or
   replicated band.

The prompt cannot add anything, so the result is labelled ``approximate``. Past the time
budget: replicated edges, blurred (labelled so in the note).
"""

from __future__ import annotations

import cv2
import numpy as np

from .common import Job, Outcome, working_size
from .fill import _patchmatch, patchmatch_available, patchmatch_cost
from .saliency import main_object

#: Working size of the coarse synthesis (the hole term dominates PatchMatch's cost).
EXPAND_WORK_PIXELS = 160_000
#: Width (full-resolution pixels) of the band re-synthesised along each seam.
SEAM = 8
#: How far into the original the sources reach, as a share of its side (at least 3 seams).
SOURCE_BAND = 0.3


def paddings(width: int, height: int, params: dict[str, float]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding, matching ``engines.output_size``."""

    def pad(size: int, key: str) -> int:
        return round(size * (float(params.get(key, 1.0)) - 1.0) / 2.0)

    return (
        pad(width, "left_scale"),
        pad(width, "right_scale"),
        pad(height, "top_scale"),
        pad(height, "bottom_scale"),
    )


def _blurred_border(canvas: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The fast fallback: replicated edges, blurred in the new area only."""
    sigma = max(4.0, max(canvas.shape[:2]) / 60.0)
    blurred = cv2.GaussianBlur(canvas, (0, 0), sigma)
    out = canvas.copy()
    out[hole] = blurred[hole]
    return out


def _not_sources(
    rgb: np.ndarray, pads: tuple[int, int, int, int], seed: int
) -> tuple[np.ndarray, bool]:
    """Original pixels (in the original's frame) that must not be copied: the interior away from
    the extended edges, and the main object. Second value: whether the subject was kept out."""
    h, w = rgb.shape[:2]
    left, right, top, bottom = pads
    bx, by = max(3 * SEAM, round(SOURCE_BAND * w)), max(3 * SEAM, round(SOURCE_BAND * h))
    source: np.ndarray = np.zeros((h, w), bool)
    if left:
        source[:, :bx] = True
    if right:
        source[:, w - bx :] = True
    if top:
        source[:by] = True
    if bottom:
        source[h - by :] = True
    subject = main_object(rgb, seed)
    grow = max(3, round(0.03 * max(h, w)))
    subject = cv2.dilate(subject.astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)) > 0
    background = source & ~subject
    if background.sum() >= 0.05 * h * w:
        return ~background, True
    return ~source, False  # the subject fills the frame: allow it rather than starve PatchMatch


def _seam_strips(
    shape: tuple[int, int], box: tuple[int, int, int, int], pads: tuple[int, int, int, int]
) -> list[tuple[slice, slice]]:
    """Full-resolution strips straddling each extended seam (canvas coordinates)."""
    oh, ow = shape
    x0, y0, x1, y1 = box
    left, right, top, bottom = pads
    reach = 4 * SEAM
    strips = []
    if left:
        strips.append((slice(0, oh), slice(max(0, x0 - reach), x0 + reach)))
    if right:
        strips.append((slice(0, oh), slice(x1 - reach, min(ow, x1 + reach))))
    if top:
        strips.append((slice(max(0, y0 - reach), y0 + reach), slice(0, ow)))
    if bottom:
        strips.append((slice(y1 - reach, min(oh, y1 + reach)), slice(0, ow)))
    return strips


def match_tone(out: np.ndarray, box: tuple[int, int, int, int], pads: tuple[int, ...]) -> None:
    """Shift the synthesised border's low frequencies to meet the original's edge (in place).

    The offset between the original's outermost pixels and the synthesis just beyond the seam
    band is smoothed along the seam and faded out with distance, so only tone moves: the
    texture stays at full resolution and no soft band appears.
    """
    x0, y0, x1, y1 = box
    oh, ow = out.shape[:2]
    f = out.astype(np.float32)
    k = 3  # columns / rows averaged on each side
    gap = SEAM + 2

    def smooth(diff: np.ndarray, n: int, start: int) -> np.ndarray:
        sigma = max(4.0, len(diff) / 40.0)
        d = cv2.GaussianBlur(diff[None, :, :], (0, 0), sigma)[0]
        full = np.empty((n, 3), np.float32)
        full[:start] = d[0]
        full[start : start + len(d)] = d
        full[start + len(d) :] = d[-1]
        return full

    left, right, top, bottom = pads
    if left:
        inner = f[y0:y1, x0 : x0 + k].mean(axis=1)
        outer = f[y0:y1, max(0, x0 - gap - k) : x0 - gap].mean(axis=1)
        diff = smooth(inner - outer, oh, y0)
        fade = np.exp(-np.arange(x0, 0, -1, dtype=np.float32) / max(16.0, left / 2))
        f[:, :x0] += diff[:, None, :] * fade[None, :, None]
    if right:
        inner = f[y0:y1, x1 - k : x1].mean(axis=1)
        outer = f[y0:y1, x1 + gap : min(ow, x1 + gap + k)].mean(axis=1)
        diff = smooth(inner - outer, oh, y0)
        fade = np.exp(-np.arange(1, ow - x1 + 1, dtype=np.float32) / max(16.0, right / 2))
        f[:, x1:] += diff[:, None, :] * fade[None, :, None]
    if top:
        inner = f[y0 : y0 + k, x0:x1].mean(axis=0)
        outer = f[max(0, y0 - gap - k) : y0 - gap, x0:x1].mean(axis=0)
        diff = smooth(inner - outer, ow, x0)
        fade = np.exp(-np.arange(y0, 0, -1, dtype=np.float32) / max(16.0, top / 2))
        f[:y0] += fade[:, None, None] * diff[None, :, :]
    if bottom:
        inner = f[y1 - k : y1, x0:x1].mean(axis=0)
        outer = f[y1 + gap : min(oh, y1 + gap + k), x0:x1].mean(axis=0)
        diff = smooth(inner - outer, ow, x0)
        fade = np.exp(-np.arange(1, oh - y1 + 1, dtype=np.float32) / max(16.0, bottom / 2))
        f[y1:] += fade[:, None, None] * diff[None, :, :]
    out[:] = np.clip(f + 0.5, 0, 255).astype(np.uint8)


def seam_strip_cost(length: int) -> float:
    """CPU seconds of one seam strip: thin holes are far cheaper per pixel than
    :func:`patchmatch_cost`'s blobs (0.22 s measured for a 1536-long strip)."""
    return 0.03 + 1.8e-5 * SEAM * length


def run(job: Job) -> Outcome:
    h, w = job.rgb.shape[:2]
    pads = paddings(w, h, dict(job.parameters))
    left, right, top, bottom = pads
    if not any(pads):
        return Outcome(job.rgb.copy(), "approximate", "expand:none", {"note": "all scales are 1.0"},
                       "all scales are 1.0: nothing to expand")  # fmt: skip
    canvas = cv2.copyMakeBorder(job.rgb, top, bottom, left, right, cv2.BORDER_REPLICATE)
    oh, ow = canvas.shape[:2]
    box = (left, top, left + w, top + h)
    hole = np.ones((oh, ow), bool)
    hole[top : top + h, left : left + w] = False
    # Small canvases too are synthesised at half their area at most: the full-size seam pass
    # restores the detail where it shows, for a fraction of the cost.
    ww, wh, _ = working_size(ow, oh, min(EXPAND_WORK_PIXELS, max(40_000, ow * oh // 2)))
    hole_work = int(hole.sum() * (ww * wh) / (ow * oh))
    strips = _seam_strips((oh, ow), box, pads)
    seam_cost = sum(seam_strip_cost(max(sx.stop - sx.start, sy.stop - sy.start))
                    for sy, sx in strips)  # fmt: skip
    padding = f"{left},{right},{top},{bottom}"
    if not (patchmatch_available() and job.budget.allow(patchmatch_cost(ww, wh, hole_work)
                                                        + seam_cost)):  # fmt: skip
        out = _blurred_border(canvas, hole)
        out[top : top + h, left : left + w] = job.rgb
        note = "time budget too small for synthesis: edges replicated and blurred"
        if not patchmatch_available():
            note = "PatchMatch unavailable: edges replicated and blurred"
        return Outcome(out, "approximate", "expand:replicate+blur", {"padding": padding}, note)
    barred, kept_out = _not_sources(job.rgb, pads, job.cv_seed("subject"))
    exclude: np.ndarray = np.zeros((oh, ow), bool)
    exclude[top : top + h, left : left + w] = barred
    # 1. Coarse synthesis of the whole border.
    small = cv2.resize(canvas, (ww, wh), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.uint8), (ww, wh), interpolation=cv2.INTER_AREA) > 0
    small_ex = cv2.resize(exclude.astype(np.uint8), (ww, wh), interpolation=cv2.INTER_NEAREST) > 0
    small_ex &= ~small_hole
    coarse = _patchmatch(small, small_hole, job.seed, small_ex)
    out = cv2.resize(coarse, (ow, oh), interpolation=cv2.INTER_CUBIC)
    out[top : top + h, left : left + w] = job.rgb
    match_tone(out, box, pads)
    out[top : top + h, left : left + w] = job.rgb
    # 2. The seams again, at full resolution.
    band = hole & (cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3) <= SEAM)
    for i, (sy, sx) in enumerate(strips):
        part = band[sy, sx]
        if part.any():
            region = np.ascontiguousarray(out[sy, sx])
            filled = _patchmatch(region, part, job.seed + 1 + i, exclude[sy, sx])
            view = out[sy, sx]
            view[part] = filled[part]
    scale = round(ow / ww, 1)
    note = (
        f"border synthesised from the photo's own background (PatchMatch at 1/{scale:g} size, "
        f"seams at full size); {'subject kept out of the sources' if kept_out else 'subject fills the frame and may repeat'}; "  # noqa: E501
        "the prompt cannot add content"
    )
    notes = {"padding": padding, "subject_excluded": str(kept_out).lower()}
    return Outcome(out, "approximate", "expand:patchmatch", notes, note)
