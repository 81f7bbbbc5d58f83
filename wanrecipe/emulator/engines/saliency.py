"""A guess at "the subject": spectral-residual saliency and a centre prior seeding GrabCut.

No open-vocabulary segmenter ships in a wheel, so this cannot find the object a prompt names;
it finds the most salient central region (local-engines.md §1.2).
"""

from __future__ import annotations

import cv2
import numpy as np

from .common import working_size

GRABCUT_PIXELS = 256 * 256  # ~0.3 s for 4 GrabCut iterations on the 2-core machine
#: GrabCut from a rectangle converges slowly on grey inputs (2.8 s at 256²): a smaller frame.
MAIN_OBJECT_PIXELS = 144 * 144


def saliency_map(rgb: np.ndarray, size: int = 64) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang 2007) times a centre prior, in [0, 1]."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    spectrum = np.fft.fft2(small)
    log_amp = np.log(np.abs(spectrum) + 1e-6).astype(np.float32)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    phase = np.angle(spectrum)
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), 2.5)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) - 0.5
    sal *= np.exp(-(xx**2 + yy**2) / (2 * 0.28**2))
    sal = (sal - sal.min()) / (sal.max() - sal.min() + 1e-9)
    return np.asarray(cv2.resize(sal, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR))


def subject_mask(rgb: np.ndarray, seed: int) -> np.ndarray:
    """A boolean HxW mask of the presumed subject (never empty, never the whole frame)."""
    h, w = rgb.shape[:2]
    ww, wh, _ = working_size(w, h, GRABCUT_PIXELS)
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
    sal = saliency_map(small)
    gc: np.ndarray = np.full((wh, ww), cv2.GC_PR_BGD, np.uint8)
    gc[sal >= np.quantile(sal, 0.75)] = cv2.GC_PR_FGD
    gc[sal >= np.quantile(sal, 0.97)] = cv2.GC_FGD
    border = max(2, min(ww, wh) // 40)
    gc[:border], gc[-border:], gc[:, :border], gc[:, -border:] = (cv2.GC_BGD,) * 4
    bgd: np.ndarray = np.zeros((1, 65), np.float64)
    fgd: np.ndarray = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed & 0x7FFFFFFF)
    try:
        cv2.grabCut(
            cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
            gc,
            (0, 0, 1, 1),
            bgd,
            fgd,
            4,
            cv2.GC_INIT_WITH_MASK,
        )
        fg: np.ndarray = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    except cv2.error:
        fg = (sal >= np.quantile(sal, 0.75)).astype(np.uint8)
    count, labels, _stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count > 1:
        # The component holding the most saliency, not merely the biggest one.
        scores = np.bincount(labels.ravel(), weights=sal.ravel(), minlength=count)
        scores[0] = -1
        fg = (labels == int(np.argmax(scores))).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    if fg.sum() < 0.01 * ww * wh or fg.sum() > 0.9 * ww * wh:
        fg = (sal >= np.quantile(sal, 0.8)).astype(np.uint8)
    full = cv2.resize(fg * 255, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(full >= 128)


def main_object(rgb: np.ndarray, seed: int) -> np.ndarray:
    """The main object: GrabCut from a rectangle around the salient half of the frame (a cat
    filling the frame, a person, a cup), not only the single most salient blob (an eye).

    When the cut is implausibly small or large: the ellipse inscribed in that rectangle.
    """
    found, _ = main_object_found(rgb, seed)
    return found


def main_object_found(rgb: np.ndarray, seed: int) -> tuple[np.ndarray, bool]:
    """:func:`main_object` and whether GrabCut really found it (False: the ellipse guess)."""
    h, w = rgb.shape[:2]
    ww, wh, _ = working_size(w, h, MAIN_OBJECT_PIXELS)
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA)
    sal = saliency_map(small)
    ys, xs = np.nonzero(sal >= np.quantile(sal, 0.6))
    mx, my = max(2, ww // 12), max(2, wh // 12)
    x0, x1 = max(mx, int(xs.min()) - mx), min(ww - mx, int(xs.max()) + mx)
    y0, y1 = max(my, int(ys.min()) - my), min(wh - 1, int(ys.max()) + my)
    gc: np.ndarray = np.zeros((wh, ww), np.uint8)
    bgd: np.ndarray = np.zeros((1, 65), np.float64)
    fgd: np.ndarray = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed & 0x7FFFFFFF)
    try:
        cv2.grabCut(
            cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
            gc,
            (x0, y0, max(4, x1 - x0), max(4, y1 - y0)),
            bgd,
            fgd,
            3,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return subject_mask(rgb, seed), False
    fg = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        fg = (labels == biggest).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    fg = np.asarray(cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel), np.uint8)
    share = float(fg.mean())
    confident = 0.15 <= share <= 0.97
    if not confident:
        # GrabCut found no convincing object (grey inputs give it little to go on): the
        # ellipse inscribed in the salient rectangle, the usual place of a photo's subject.
        fg = np.zeros((wh, ww), np.uint8)
        centre = ((x0 + x1) // 2, (y0 + y1) // 2)
        cv2.ellipse(fg, centre, (max(2, (x1 - x0) // 2), max(2, (y1 - y0) // 2)), 0, 0, 360, 1, -1)
    full = cv2.resize(fg * 255, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(full >= 128), confident
