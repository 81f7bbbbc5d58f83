"""colorization: keep the input's luminance, choose chroma from prompt colours or a scene prior.

No wheel ships a colourisation network, so colours land on regions a heuristic picks (subject
versus background, luminance bands), not on the objects a prompt names.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import prompt as words
from .common import Job, Outcome, working_size
from .saliency import subject_mask

WORK_PIXELS = 512 * 512

WARM_NEUTRAL = (185, 160, 135)
SKY = (110, 160, 220)
FOLIAGE = (80, 140, 70)
EARTH = (140, 105, 70)


def _ab(colour: tuple[int, int, int]) -> np.ndarray:
    lab = cv2.cvtColor(np.array([[colour]], np.uint8), cv2.COLOR_RGB2LAB)[0, 0].astype(np.float32)
    return np.asarray(lab[1:] - 128.0, np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide), with box filters: edge-aware smoothing of ``src``."""
    k = (2 * radius + 1, 2 * radius + 1)
    mean_i = cv2.boxFilter(guide, -1, k)
    mean_p = cv2.boxFilter(src, -1, k)
    corr_ip = cv2.boxFilter(guide * src, -1, k)
    var_i = cv2.boxFilter(guide * guide, -1, k) - mean_i * mean_i
    a = (corr_ip - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    return np.asarray(cv2.boxFilter(a, -1, k) * guide + cv2.boxFilter(b, -1, k), np.float32)


def _prior(lum: np.ndarray) -> tuple[np.ndarray, str]:
    """Soft scene weights: bright smooth top = sky, textured = foliage, bottom = earth."""
    h, w = lum.shape
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    mean = cv2.blur(lum, (15, 15))
    texture = np.sqrt(np.clip(cv2.blur(lum * lum, (15, 15)) - mean * mean, 0, None))
    tex = np.clip(texture / 0.08, 0, 1)
    w_sky = np.clip(1.4 - 2.2 * y, 0, 1) * np.clip((lum - 0.35) / 0.4, 0, 1) * (1 - tex)
    w_leaf = tex * np.clip(1.2 - np.abs(y - 0.55) * 2, 0, 1) * 0.8
    w_earth = np.clip((y - 0.55) / 0.35, 0, 1) * 0.8
    w_rest = np.full_like(lum, 0.35)
    weights = np.stack([w_sky, w_leaf, w_earth, w_rest], axis=-1)
    weights /= weights.sum(axis=-1, keepdims=True)
    chroma = np.stack([_ab(c) for c in (SKY, FOLIAGE, EARTH, WARM_NEUTRAL)])  # 4x2
    return (weights @ chroma).astype(np.float32), "scene prior"


def _from_hints(
    rgb: np.ndarray, lum: np.ndarray, hints: list[words.ColourHint], job: Job
) -> np.ndarray:
    fg = subject_mask(rgb, job.cv_seed("subject"))
    ab, _ = _prior(lum)
    back = [h for h in hints if h.background]
    front = [h for h in hints if not h.background]
    if back:
        ab[~fg] = _ab(back[0].rgb)
    if front:
        if len(front) == 1:
            ab[fg] = _ab(front[0].rgb)
        else:
            # Several subject colours: split the subject into luminance bands, darkest first.
            vals = lum[fg]
            edges = np.quantile(vals, np.linspace(0, 1, len(front) + 1)[1:-1])
            band = np.searchsorted(edges, vals)
            ab[fg] = np.stack([_ab(h.rgb) for h in front])[band]
    return ab


def keep_luma(rgb: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Shift each pixel's channels equally until its luma matches ``grey`` again: Lab's L is not
    the luma a viewer (or cv2's grey) measures, and gamut clipping moves it further."""
    target = grey.astype(np.float32)
    out = rgb.astype(np.float32)
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    for _ in range(3):
        out += (target - out @ weights)[..., None]
        np.clip(out, 0, 255, out=out)
    return np.asarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def run(job: Job) -> Outcome:
    h, w = job.rgb.shape[:2]
    grey = cv2.cvtColor(job.rgb, cv2.COLOR_RGB2GRAY)
    # L from the input's own luminance; only a and b are invented.
    lab_in = cv2.cvtColor(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), cv2.COLOR_RGB2LAB)
    ww, wh, scale = working_size(w, h, WORK_PIXELS)
    small_grey = cv2.resize(grey, (ww, wh), interpolation=cv2.INTER_AREA) if scale < 1 else grey
    lum = small_grey.astype(np.float32) / 255.0
    hints = words.colour_hints(job.prompt)
    if hints:
        small_rgb = cv2.cvtColor(small_grey, cv2.COLOR_GRAY2RGB)
        ab = _from_hints(small_rgb, lum, hints, job)
        source = "prompt colours: " + ", ".join(
            f"{x.name} ({'background' if x.background else 'subject'})" for x in hints
        )
    else:
        ab, source = _prior(lum)
    radius = max(4, round(16 * ww / 1024))
    ab = np.stack([guided_filter(lum, ab[..., c], radius, 1e-3) for c in range(2)], axis=-1)
    if scale < 1:
        ab = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)
    lab = lab_in.astype(np.float32)
    lab[..., 1:] = np.clip(ab + 128.0, 0, 255)
    out = cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    out = keep_luma(out, grey)
    return Outcome(out, "approximate", "lab-chroma", {"colours": source})
