"""doodle: line art (extracted from a photo when ``is_sketch`` is false), then a flat-colour fill.

Sketch-to-image is generative; this keeps the lines and colours the closed regions they form.
Prompt colours go where their nouns are (sky: regions at the top edge, ground/grass: at the
bottom edge, a named object: the largest enclosed region), not by region size. It adds no
content the lines do not imply.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import prompt as words
from .common import Job, Outcome, fbm, to_u8, working_size, xdog

PALETTE = (
    (244, 196, 120), (150, 200, 140), (130, 170, 220), (230, 140, 130), (200, 170, 220),
    (250, 225, 140), (160, 210, 210), (220, 180, 150), (180, 200, 110), (240, 170, 190),
)  # fmt: skip
PAPER = (250, 246, 236)


def sketch_ink(rgb: np.ndarray) -> np.ndarray:
    """Ink of a drawing that already is line art: dark strokes on a light ground."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.asarray(
        cv2.adaptiveThreshold(
            grey, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY_INV, 31, 10
        )
        > 0
    )


def photo_ink(rgb: np.ndarray) -> np.ndarray:
    """Line art from a photo: colour edges (Canny on each Lab channel) of a strongly smoothed
    image, so texture does not turn into ink, plus XDoG for the middles of dark strokes."""
    smooth = cv2.bilateralFilter(cv2.bilateralFilter(rgb, 9, 60, 7), 9, 60, 7)
    smooth = cv2.medianBlur(smooth, 5)
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB)
    edges: np.ndarray = np.zeros(rgb.shape[:2], np.uint8)
    for c in range(3):
        edges = cv2.max(edges, cv2.Canny(np.ascontiguousarray(lab[..., c]), 20, 50))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    dark = (xdog(grey, sigma=0.8) < 0.5).astype(np.uint8) * 255
    ink = cv2.max(cv2.dilate(edges, np.ones((2, 2), np.uint8)), dark)
    _count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= 30
    keep[0] = False
    return np.asarray(keep[labels])


def place_colours(
    prompt: str,
    stats: np.ndarray,
    order: list[int],
    colours: np.ndarray,
    size: tuple[int, int],
) -> list[str]:
    """Give each prompt colour to the regions its noun names, by position, not by size: sky =
    regions touching the top edge, ground = regions touching the bottom edge, background = the
    largest region, anything else (a house, a cat) = the largest region touching no edge."""
    h, w = size
    placed: list[str] = []

    def touches(i: int, edge: str) -> bool:
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        cy = y + bh / 2
        if edge == "top":
            return y <= 1 and cy < 0.5 * h
        if edge == "bottom":
            return y + bh >= h - 1 and cy > 0.5 * h
        return x <= 1 or y <= 1 or x + bw >= w - 1 or y + bh >= h - 1

    used: set[int] = set()
    for hint in words.colour_hints(prompt):
        if hint.region == "sky":
            targets = [i for i in order if touches(i, "top")]
        elif hint.region == "ground":
            targets = [i for i in order if touches(i, "bottom")]
        elif hint.region == "background":
            targets = order[:1]
        else:
            inner = [i for i in order if not touches(i, "any") and i not in used]
            targets = inner[:1]
        targets = [i for i in targets if i not in used]
        if not targets:
            placed.append(f"{hint.name} not placed ({hint.region} not found)")
            continue
        for i in targets:
            colours[i] = hint.rgb
            used.add(i)
        placed.append(f"{hint.name} on the {hint.region}")
    return placed


def run(job: Job) -> Outcome:
    h, w = job.rgb.shape[:2]
    is_sketch = bool(job.parameters.get("is_sketch", False))
    ink = sketch_ink(job.rgb) if is_sketch else photo_ink(job.rgb)
    ww, wh, scale = working_size(w, h, 1024 * 1024)
    work_ink = (
        cv2.resize(ink.astype(np.uint8), (ww, wh), interpolation=cv2.INTER_NEAREST)
        if scale < 1
        else ink.astype(np.uint8)
    )
    # Close small gaps so regions do not leak into each other, then label what the lines enclose.
    closed = cv2.morphologyEx(work_ink, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (closed == 0).astype(np.uint8), connectivity=4
    )
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    areas[0] = -1  # label 0 is the ink itself
    order = [int(i) for i in np.argsort(-areas, kind="stable") if areas[i] > 0]
    rng = job.rng("doodle")
    colours = np.zeros((count, 3), np.float32)
    colours[0] = PAPER
    palette = [PALETTE[i] for i in rng.permutation(len(PALETTE))]
    for rank, label in enumerate(order):
        # The largest region is the ground of the drawing; the rest take soft palette colours.
        colours[label] = PAPER if rank == 0 else palette[rank % len(palette)]
    placed = place_colours(job.prompt, stats, order, colours, (wh, ww))
    flat = colours[labels]
    # Shade each region darker towards its borders, and add paper grain.
    # Capped: with no ink at all, OpenCV reports "infinitely far" as a huge float.
    dist = np.minimum(cv2.distanceTransform((closed == 0).astype(np.uint8), cv2.DIST_L2, 3), 1e4)
    shade = 0.82 + 0.18 * np.clip(dist / (12.0 * max(ww, wh) / 1024.0), 0, 1)
    grain = (fbm(rng, wh, ww, 4, 8) - 0.5) * 14.0
    painted = flat * shade[..., None] + grain[..., None]
    if scale < 1:
        painted = cv2.resize(painted, (w, h), interpolation=cv2.INTER_LINEAR)
    out = to_u8(painted)
    out[ink] = (35, 30, 30)  # the lines, redrawn on top at full resolution
    notes = {
        "regions": str(len(order)),
        "lines": "given sketch" if is_sketch else "extracted from photo",
    }
    note = "line art kept, closed regions filled with flat colours; no new content drawn"
    if placed:
        note += "; prompt colours: " + ", ".join(placed)
        notes["colours"] = ", ".join(placed)
    return Outcome(out, "approximate", "lineart+flatfill", notes, note)
