"""colorization: keep the input's luminance, choose chroma conservatively or from the prompt.

No wheel ships a colourisation network. Without colour words the engine tints the way a hand-
coloured print does: a gentle warm tone on the mid-tones (shadows and highlights stay neutral)
and a soft blue only on a wide, smooth sky hanging from the top edge; it never paints green or
any saturated colour it was not asked for. Colour words go to the region their clause names
(regions.py): sky (top, smooth), ground/grass (bottom, textured), background (not the subject)
or the subject (the salient region), one colour per region, never split by brightness bands.
A region that cannot be found is left at the default tint, and the note says so.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import prompt as words
from . import regions
from .common import Job, Outcome, working_size

WORK_PIXELS = 384 * 384

#: The default tint (CIELAB a*, b*) on mid-tones: a warm, low-chroma sepia-like cast.
WARM_AB = (5.0, 12.0)
#: The default sky tint: a pale blue, applied only to a wide smooth sky at the top.
SKY_AB = (-2.0, -12.0)
#: Named colours are applied at this share of their chroma: photographs are rarely pure hues.
HINT_CHROMA = 0.75


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


def midtones(lum: np.ndarray) -> np.ndarray:
    """1 at mid grey, 0 at black and white: chroma fades out in shadows and highlights."""
    return np.asarray(np.clip(4.0 * lum * (1.0 - lum), 0, 1), np.float32)


def default_chroma(lum: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The conservative a*b* field and the sky it found (None if none)."""
    mid = midtones(lum)[..., None]
    ab = mid * np.array(WARM_AB, np.float32)
    found = regions.sky(lum, strict=True)
    if found is not None:
        ab[found] = np.array(SKY_AB, np.float32) * np.clip(mid[found] * 1.5, 0.3, 1.0)
    return ab.astype(np.float32), found


def _place_hints(
    rgb: np.ndarray, lum: np.ndarray, hints: list[words.ColourHint], job: Job, ab: np.ndarray
) -> tuple[list[str], list[str]]:
    """Paint each hint's colour on its region; returns (placed, skipped) descriptions."""
    placed: list[str] = []
    skipped: list[str] = []
    taken: set[str] = set()
    sky = subj = None
    mid = np.clip(midtones(lum) * 1.3, 0.25, 1.0)[..., None]
    for hint in hints:
        region = hint.region
        if region in taken:
            skipped.append(f"{hint.name} (a second colour for the {region})")
            continue
        mask: np.ndarray | None
        if region == "sky":
            mask = sky = regions.sky(lum, strict=False)
        elif region == "ground":
            if subj is None:
                subj = regions.subject(rgb, job.cv_seed("subject"), confident=True)
            mask = regions.ground(lum, exclude=subj)
        else:
            if sky is None:
                sky = regions.sky(lum, strict=False)
            if subj is None:
                subj = regions.subject(rgb, job.cv_seed("subject"), exclude=sky, confident=True)
            # The background: what is not the subject, else at least the sky.
            background = ~subj if subj is not None else sky
            mask = subj if region == "subject" else background
        if mask is None or not mask.any():
            skipped.append(f"{hint.name} ({region} not found)")
            continue
        # A soft alpha that snaps to the picture's own edges: the regions are guesses, and a
        # hard outline (an ellipse, a band) would show.
        radius = max(4, max(lum.shape) // 24)
        alpha = np.clip(guided_filter(lum, mask.astype(np.float32), radius, 2e-3), 0, 1)
        alpha = np.maximum(alpha * mask, alpha**2)[..., None]
        target = (HINT_CHROMA * _ab(hint.rgb))[None, None, :] * mid
        ab[:] = ab * (1 - alpha) + target * alpha
        taken.add(region)
        placed.append(f"{hint.name} on the {region}")
    return placed, skipped


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
    ab, sky = default_chroma(lum)
    base = "warm mid-tone tint" + (", pale blue sky" if sky is not None else "")
    hints = words.colour_hints(job.prompt)
    placed: list[str] = []
    skipped: list[str] = []
    if hints:
        small_rgb = cv2.cvtColor(small_grey, cv2.COLOR_GRAY2RGB)
        placed, skipped = _place_hints(small_rgb, lum, hints, job, ab)
    radius = max(3, round(12 * ww / 1024))
    ab = np.stack([guided_filter(lum, ab[..., c], radius, 1e-3) for c in range(2)], axis=-1)
    if scale < 1:
        ab = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)
    lab = lab_in.astype(np.float32)
    lab[..., 1:] = np.clip(ab + 128.0, 0, 255)
    out = cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    out = keep_luma(out, grey)
    note = "colour invented by a heuristic, not a model: " + base
    if placed:
        note += "; prompt colours: " + ", ".join(placed)
    if skipped:
        note += "; not placed: " + ", ".join(skipped)
    notes = {"colours": "; ".join(placed) or base}
    if skipped:
        notes["skipped"] = "; ".join(skipped)
    return Outcome(out, "approximate", "lab-chroma", notes, note)
