"""expand: outpainting by PatchMatch texture synthesis at a capped working size.

The original pixels are pasted back exactly; the new border is synthesised from the image's own
patches (the prompt cannot add anything). Past the time budget: edge replication plus blur.
"""

from __future__ import annotations

import cv2
import numpy as np

from .common import Fidelity, Job, Outcome, working_size
from .fill import fill_region, patchmatch_available, patchmatch_cost

#: Working size for the synthesis (local-engines.md §1.6: ~0.7 MP keeps 1.5x at ~10 s).
EXPAND_WORK_PIXELS = 700_000
SEAM = 12


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


def run(job: Job) -> Outcome:
    h, w = job.rgb.shape[:2]
    left, right, top, bottom = paddings(w, h, dict(job.parameters))
    if not (left or right or top or bottom):
        return Outcome(job.rgb.copy(), "real", "expand:none", {"note": "all scales are 1.0"})
    canvas = cv2.copyMakeBorder(job.rgb, top, bottom, left, right, cv2.BORDER_REPLICATE)
    oh, ow = canvas.shape[:2]
    hole = np.ones((oh, ow), bool)
    hole[top : top + h, left : left + w] = False
    ww, wh, _ = working_size(ow, oh, EXPAND_WORK_PIXELS)
    hole_work = int(hole.sum() * (ww * wh) / (ow * oh))
    fits = job.budget.allow(patchmatch_cost(ww, wh, hole_work))
    if patchmatch_available() and fits:
        filled = fill_region(canvas, hole, job.seed, EXPAND_WORK_PIXELS)
        method = "patchmatch"
        # The synthesis ran at reduced size: feather its first pixels into the replicated edge
        # so the seam against the exact original does not show a step.
        dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
        alpha = np.clip(dist / SEAM, 0.0, 1.0)[..., None]
        soft = _blurred_border(canvas, hole)
        out = (filled * alpha + soft * (1.0 - alpha) + 0.5).astype(np.uint8)
    else:
        out = _blurred_border(canvas, hole)
        method = "replicate+blur"
    out[top : top + h, left : left + w] = job.rgb  # the original, exactly
    fidelity: Fidelity = "real" if method == "patchmatch" else "approximate"
    return Outcome(out, fidelity, f"expand:{method}", {"padding": f"{left},{right},{top},{bottom}"})
