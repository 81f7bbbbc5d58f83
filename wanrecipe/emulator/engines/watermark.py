"""remove_watermark: find text-like marks with a classical detector, then inpaint them.

The detector looks for strokes that stand out from their surroundings (morphological top-hat for
light marks, black-hat for dark ones) and keeps clusters shaped like lines of text: wider than
tall, densely stroked, not too big. It misses marks that barely differ from the background
(faint semi-transparent text on bright areas) and non-text logos.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import textdet
from .common import Job, Outcome, working_size
from .fill import fill_holes

DETECT_MAX_PIXELS = 1024 * 1024


def detect_text(rgb: np.ndarray) -> np.ndarray:
    """A boolean mask of text strokes (dilated a little), at the size of ``rgb``."""
    h, w = rgb.shape[:2]
    ww, wh, scale = working_size(w, h, DETECT_MAX_PIXELS)
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    size = max(ww, wh)
    k = max(9, (size // 60) | 1)  # wider than a stroke, narrower than a glyph row's gaps
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    light = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel)
    dark = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
    response = cv2.max(light, dark)
    # Strong, locally sharp responses only: texture noise has low, diffuse top-hat values.
    level = max(28.0, float(response.mean() + 3.0 * response.std()))
    strokes: np.ndarray = (response >= level).astype(np.uint8)
    strokes = cv2.morphologyEx(strokes, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    line = cv2.morphologyEx(
        strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * k + 1, 3))
    )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(line, connectivity=8)
    keep = np.zeros(count, bool)
    for i in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if bh < 5 or bh > 0.2 * wh or bw < 2 * bh or bw < 20:
            continue
        density = float(strokes[y : y + bh, x : x + bw].mean())
        if 0.12 <= density <= 0.85 and area >= 0.4 * bw * bh:
            keep[i] = True
    # Inside an accepted line, take fainter stroke pixels too (antialiasing, thin serifs).
    boxes = cv2.dilate((keep[labels]).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    found = boxes & (response >= 0.5 * level)
    grown = cv2.dilate(found.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    if scale < 1:
        grown = cv2.resize(grown, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.asarray(grown > 0)


def strokes_in_boxes(rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Inside the neural detector's boxes, the pixels that differ from their surroundings: the
    fill then replaces the glyphs, not the whole box (less synthesis, better kept background)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    k = max(9, (max(grey.shape) // 60) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    response = cv2.max(
        cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel),
        cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel),
    )
    found = boxes & (response >= 10)
    grown = cv2.dilate(found.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    return np.asarray((grown > 0) & boxes)


def run(job: Job) -> Outcome:
    boxes = textdet.detect_boxes(job.rgb)
    if boxes is not None:
        marks, detector = strokes_in_boxes(job.rgb, boxes), "ppocr-det"
    else:
        marks, detector = detect_text(job.rgb), "text-detect"
    found = int(marks.sum())
    if not found:
        return Outcome(job.rgb.copy(), "real", detector, {"marks": "none found"})
    out, method = fill_holes(job.rgb, marks, job.seed, job.budget)
    return Outcome(out, "real", f"{detector}+{method}", {"mark_pixels": str(found)})
