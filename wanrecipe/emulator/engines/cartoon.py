"""control_cartoon_feature: the reference character cut out and placed on a prompt-keyed backdrop.

The real function redraws the character in a new pose or scene; that needs a generative model.
This is a compositing placeholder and is labelled so.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import prompt as words
from .common import Job, Outcome, fbm, to_u8
from .saliency import subject_mask

SCENES: dict[str, tuple[str, ...]] = {
    "room": (
        "room",
        "indoor",
        "indoors",
        "living room",
        "bedroom",
        "house",
        "房间",
        "室内",
        "客厅",
        "卧室",
    ),
    "forest": (
        "forest",
        "woods",
        "tree",
        "trees",
        "park",
        "garden",
        "森林",
        "树林",
        "公园",
        "花园",
    ),
    "sea": ("sea", "ocean", "beach", "water", "lake", "海", "海边", "沙滩", "湖"),
    "night": ("night", "stars", "starry", "moon", "夜", "星", "月亮"),
}
BACKDROPS: dict[str | None, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "room": ((236, 222, 200), (170, 130, 95)),
    "forest": ((190, 225, 180), (70, 120, 60)),
    "sea": ((150, 200, 240), (40, 110, 170)),
    "night": ((20, 25, 60), (40, 45, 80)),
    None: ((250, 228, 236), (210, 225, 250)),
}


def cut_out(rgb: np.ndarray, seed: int) -> np.ndarray:
    """The character mask: flood fill from the corners (flat backgrounds), else saliency."""
    h, w = rgb.shape[:2]
    background = np.zeros((h + 2, w + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8)
    work = rgb.copy()
    for x, y in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        if background[y + 1, x + 1] == 0:
            cv2.floodFill(work, background, (x, y), (0, 0, 0), (12,) * 3, (12,) * 3, flags)
    fg = background[1:-1, 1:-1] == 0
    share = float(fg.mean())
    if share < 0.02 or share > 0.9:
        return subject_mask(rgb, seed)
    fg8 = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return np.asarray(fg8 > 0)


def run(job: Job) -> Outcome:
    h, w = job.rgb.shape[:2]
    mask = cut_out(job.rgb, job.cv_seed("cutout"))
    scene = words.pick(job.prompt, SCENES)
    top, bottom = (np.array(c, np.float32) for c in BACKDROPS[scene])
    rng = job.rng("scene")
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    back = top * (1 - y) + bottom * y
    back = back + (fbm(rng, h, w, 4, 5)[..., None] - 0.5) * 16.0
    canvas = np.broadcast_to(back, (h, w, 3)).astype(np.float32).copy()
    if scene == "night":
        stars = rng.random((h, w)) > 0.9985
        canvas[stars & (y[..., 0] < 0.6)] = 255.0
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    sprite = job.rgb[y0:y1, x0:x1]
    alpha0 = mask[y0:y1, x0:x1].astype(np.float32)
    scale = min(0.6 * h / (y1 - y0), 0.95 * w / (x1 - x0))  # 60 % of the height, never wider
    sw, sh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    sw, sh = min(sw, w), min(sh, h)
    sprite = cv2.resize(sprite, (sw, sh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha: np.ndarray = cv2.GaussianBlur(
        cv2.resize(alpha0, (sw, sh), interpolation=cv2.INTER_LINEAR), (0, 0), 0.8
    )
    if rng.random() < 0.5:
        sprite, alpha = sprite[:, ::-1], alpha[:, ::-1]
    px = int(rng.integers(0, w - sw + 1))
    py = int(h * 0.92) - sh
    # A soft contact shadow under the feet.
    shadow: np.ndarray = np.zeros((h, w), np.float32)
    cv2.ellipse(
        shadow,
        (px + sw // 2, int(h * 0.92)),
        (max(2, sw // 2), max(2, h // 40)),
        0,
        0,
        360,
        1.0,
        -1,
    )
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(2.0, h / 150))[..., None]
    canvas *= 1 - 0.35 * shadow
    region = canvas[py : py + sh, px : px + sw]
    a = alpha[..., None]
    canvas[py : py + sh, px : px + sw] = region * (1 - a) + sprite * a
    notes = {"scene": scene or "plain", "reason": "new poses and scenes need a generative model"}
    note = (
        f"placeholder: the character cut out and pasted on a {scene or 'plain'} backdrop; "
        "new poses and scenes need a generative model"
    )
    return Outcome(to_u8(canvas), "placeholder", "cutout-composite", notes, note)
