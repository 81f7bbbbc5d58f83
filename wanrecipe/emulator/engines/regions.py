"""Named regions of a photo, found without a segmentation model: sky, ground, the subject.

- sky: smooth (low local texture), not too dark, connected to the top edge, in the upper half;
- ground: textured or plain, connected to the bottom edge, in the lower part, not the subject;
- subject: the salient central region (saliency.py), a guess at "the object".

Each finder returns None when nothing convincing is there; callers then say so in their note
instead of painting a guess.
"""

from __future__ import annotations

import cv2
import numpy as np

from .saliency import main_object_found, subject_mask


def texture(lum: np.ndarray, k: int = 9) -> np.ndarray:
    """Local standard deviation of ``lum`` (float in [0, 1]) over a k x k window."""
    mean = cv2.blur(lum, (k, k))
    return np.asarray(np.sqrt(np.clip(cv2.blur(lum * lum, (k, k)) - mean * mean, 0, None)))


def _touching(mask: np.ndarray, edge: str, min_width: float, min_area: float) -> np.ndarray:
    """Components of ``mask`` touching ``edge`` ("top"/"bottom"), wide and large enough, whose
    centre lies in that half of the frame."""
    h, w = mask.shape
    count, labels, stats, centres = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=4
    )
    out: np.ndarray = np.zeros((h, w), bool)
    for i in range(1, count):
        _, y, bw, bh, area = (int(v) for v in stats[i])
        cy = float(centres[i][1]) / h
        touches = (y == 0 and cy < 0.45) if edge == "top" else (y + bh == h and cy > 0.55)
        if touches and bw >= min_width * w and area >= min_area * h * w:
            out |= labels == i
    return out


def sky(lum: np.ndarray, *, strict: bool = True) -> np.ndarray | None:
    """Smooth area hanging from the top edge (strict: wide and large, for unasked tints)."""
    h = lum.shape[0]
    # Texture of a lightly blurred copy: film grain and scratches do not make a sky textured.
    calm = cv2.GaussianBlur(lum, (0, 0), max(1.0, max(lum.shape) / 256))
    smooth = (texture(calm) < 0.02) & (lum > 0.12)
    smooth[int(0.8 * h) :] = False
    found = _touching(smooth, "top", 0.6 if strict else 0.25, 0.12 if strict else 0.04)
    if not found.any():
        return None
    return np.asarray(cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_CLOSE,
                                       np.ones((5, 5), np.uint8)) > 0)  # fmt: skip


def ground(lum: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray | None:
    """The part of the lower image connected to the bottom edge, textured more than the sky."""
    h, w = lum.shape
    above = sky(lum, strict=False)
    if above is not None:
        rough = ~cv2.dilate(above.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    else:
        tex = texture(lum)
        rough = tex >= min(0.04, float(np.quantile(tex, 0.5)))
    band: np.ndarray = np.zeros((h, w), bool)
    band[int(0.55 * h) :] = True
    k = max(9, (max(h, w) // 24) | 1)
    cand = cv2.morphologyEx((rough & band).astype(np.uint8), cv2.MORPH_CLOSE,
                            np.ones((k, k), np.uint8)) > 0  # fmt: skip
    cand &= band
    if exclude is not None:
        cand &= ~exclude
    found = _touching(cand, "bottom", 0.3, 0.05)
    return found if found.any() else None


def subject(
    rgb: np.ndarray, seed: int, exclude: np.ndarray | None = None, *, confident: bool = False
) -> np.ndarray | None:
    """The main object, minus ``exclude`` (e.g. the sky); None if that leaves little. When
    GrabCut finds no object: None if ``confident`` (colouring a guess would paint over what
    the prompt did not name), else the most salient blob."""
    fg, found = main_object_found(rgb, seed)
    if not found:
        if confident:
            return None
        fg = subject_mask(rgb, seed)
    if exclude is not None:
        fg &= ~exclude
    return fg if fg.mean() >= 0.01 else None
