"""remove_watermark: find lines of text, undo semi-transparent blends, inpaint the rest.

Detection is the neural PP-OCR detector when the ``models`` extra is installed (its boxes
confirmed by the PP-OCR recogniser, textdet.py), else the classical detector (textlines.py),
both of which keep only boxes that read as text. A photo with no text comes back untouched.

For each line the mark's opacity is estimated from its strokes against a smooth estimate of
the ground under them (a white mark for light strokes, a black one for dark). Where it is
clearly semi-transparent and consistent, the blend ``I = a·c + (1-a)·B`` is undone for the
fully covered stroke pixels, which keeps the photo's own texture under the mark; the
antialiased rims, and opaque marks, are inpainted (PatchMatch, fill.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from . import textdet, textlines
from .common import Fidelity, Job, Outcome
from .fill import fill_holes, telea

#: Opacity range where undoing the blend beats inpainting: below, the mark is barely there;
#: above, (1 - a) is too small and noise is amplified.
UNBLEND_ALPHA = (0.12, 0.8)
#: The per-pixel opacity estimates of one line must agree this well (interquartile range).
UNBLEND_SPREAD = 0.2


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


def unblend(rgb: np.ndarray, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Undo semi-transparent marks where their opacity can be estimated.

    Returns the image with those pixels restored, the part of ``marks`` still to inpaint, and
    how many lines were unblended.
    """
    out = rgb.copy()
    rest = marks.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        cv2.dilate(marks.astype(np.uint8), np.ones((9, 9), np.uint8)), connectivity=8
    )
    done = 0
    for i in range(1, count):
        x, y, w, h = (int(v) for v in stats[i, :4])
        pad = max(8, h // 2)
        y0, y1 = max(0, y - pad), min(rgb.shape[0], y + h + pad)
        x0, x1 = max(0, x - pad), min(rgb.shape[1], x + w + pad)
        crop = rgb[y0:y1, x0:x1]
        hole = marks[y0:y1, x0:x1] & (labels[y0:y1, x0:x1] == i)
        if hole.sum() < 20:
            continue
        # A smooth guess of what is under, from pixels clear of the mark's antialiased rims.
        wide = cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        ground = telea(crop, wide, 3).astype(np.float32)
        img = crop.astype(np.float32)
        lum_i = img @ np.array([0.299, 0.587, 0.114], np.float32)
        lum_g = ground @ np.array([0.299, 0.587, 0.114], np.float32)
        light = float(np.median(lum_i[hole] - lum_g[hole])) > 0
        colour = 255.0 if light else 0.0
        room = colour - lum_g
        usable = hole & (np.abs(room) > 40)
        if usable.sum() < 20:
            continue
        alpha_px = np.clip((lum_i - lum_g) / np.where(np.abs(room) < 1, 1, room), 0, 1)
        # The covered core: the upper of two clusters (Otsu) of the estimates; the lower one is
        # the antialiased rims and the ground a generous mask takes in.
        vals = alpha_px[usable]
        level, _ = cv2.threshold(
            np.round(vals * 255).astype(np.uint8).reshape(-1, 1), 0, 255,
            cv2.THRESH_BINARY + cv2.THRESH_OTSU,
        )  # fmt: skip
        core_vals = vals[vals * 255 > level]
        if core_vals.size < 20:
            continue
        alpha = float(np.median(core_vals))
        q1, q3 = np.quantile(core_vals, [0.25, 0.75])
        if not (UNBLEND_ALPHA[0] <= alpha <= UNBLEND_ALPHA[1]) or q3 - q1 > UNBLEND_SPREAD:
            continue
        # Fully covered pixels only: a rim pixel (partly covered) restored with the full opacity
        # would come out too dark (light marks) or too light; those are inpainted instead.
        core = usable & (alpha_px >= alpha - 0.06) & (alpha_px <= alpha + 0.2)
        restored = (img - alpha * colour) / (1.0 - alpha)
        bad = np.asarray(((restored < -8) | (restored > 263)).any(axis=2), bool)
        if float(bad[core].mean()) > 0.1:
            continue  # the estimate does not explain these pixels: inpaint them instead
        core &= ~bad
        region = out[y0:y1, x0:x1]
        region[core] = np.clip(restored[core] + 0.5, 0, 255).astype(np.uint8)
        rest[y0:y1, x0:x1] &= ~core
        done += 1
    return out, rest, done


def run(job: Job) -> Outcome:
    boxes = textdet.detect(job.rgb)
    read = ""
    if boxes is not None:
        marks = strokes_in_boxes(job.rgb, textdet.box_mask(job.rgb.shape, boxes))
        detector = "ppocr-det"
        texts = [b.text for b in boxes if b.text]
        if texts:
            read = " (read: " + "; ".join(f"'{t[:30]}'" for t in texts[:3]) + ")"
    else:
        marks, _lines = textlines.detect(job.rgb)
        detector = "text-detect"
    found = int(marks.sum())
    if not found:
        return Outcome(
            job.rgb.copy(), "approximate", detector, {"marks": "none found"},
            "no text or watermark found; input returned unchanged",
        )  # fmt: skip
    base, rest, unblended = unblend(job.rgb, marks)
    out, method = fill_holes(base, rest, job.seed, job.budget, grow=2 if not unblended else 1)
    if method == "none":
        method = "unblend"
    elif unblended:
        method = f"unblend+{method}"
    fidelity: Fidelity = "approximate" if "budget" in method else "real"
    note = f"removed {found} mark pixels ({detector}){read}: " + (
        f"{unblended} semi-transparent line(s) unblended, the rest inpainted ({method})"
        if unblended
        else f"inpainted ({method})"
    )
    return Outcome(out, fidelity, f"{detector}+{method}", {"mark_pixels": str(found)}, note)
