"""Synthetic test pictures made in code, so tests need no fixture files."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def landscape(
    size: int = 512, seed: int = 0, *, ball: bool = True, noise: float = 3.0
) -> np.ndarray:
    """Sky, clouds, sun, two noisy hills, a house, a tree and a magenta ball, with mild noise."""
    rng = np.random.default_rng(seed)
    h = w = size
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (1 - y) * np.array([90, 150, 230], np.float32) + y * np.array([190, 220, 250], np.float32)
    img = np.broadcast_to(img, (h, w, 3)).copy()
    clouds = np.clip(_noise(rng, h, w, 6) * 0.7 + _noise(rng, h, w, 14) * 0.3 - 0.5, 0, 1) * 2
    img += clouds[..., None] * (255 - img) * 0.8
    cv2.circle(img, (int(w * 0.8), int(h * 0.18)), int(size * 0.07), (255, 225, 90), -1)
    xs = np.arange(w, dtype=np.float32)
    for base, amp, colour, cells in ((0.55, 0.06, (70, 140, 60), 5), (0.7, 0.05, (120, 95, 55), 7)):
        ridge = (base + amp * np.sin(xs / w * 6.0 + cells)) * h
        mask = np.arange(h, dtype=np.float32)[:, None] >= ridge[None, :]
        tex = _noise(rng, h, w, cells * 8)[..., None] * 50 - 25
        img = np.where(mask[..., None], np.array(colour, np.float32) + tex, img)
    s = size / 512
    cv2.rectangle(
        img, (int(150 * s), int(300 * s)), (int(250 * s), int(390 * s)), (200, 80, 60), -1
    )
    pts = np.array([[140 * s, 300 * s], [200 * s, 240 * s], [260 * s, 300 * s]], np.int32)
    cv2.fillPoly(img, [pts], (110, 60, 50))
    cv2.rectangle(img, (int(185 * s), int(340 * s)), (int(215 * s), int(390 * s)), (80, 50, 30), -1)
    cv2.rectangle(img, (int(345 * s), int(300 * s)), (int(358 * s), int(380 * s)), (90, 60, 30), -1)
    cv2.circle(img, (int(352 * s), int(280 * s)), int(40 * s), (40, 110, 40), -1)
    if ball:
        cv2.circle(img, (int(300 * s), int(420 * s)), int(16 * s), (220, 40, 200), -1)
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def with_text(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rgb`` with a white and a dark line of text; also the mask of where the text is."""
    img = Image.fromarray(rgb)
    layer = Image.new("L", img.size, 0)
    h = img.height
    font = ImageFont.load_default(size=max(16, h // 14))
    small = ImageFont.load_default(size=max(12, h // 28))
    draw = ImageDraw.Draw(img)
    where = ImageDraw.Draw(layer)
    for xy, text, fnt, fill in (
        ((h // 10, h // 8), "SAMPLE WATERMARK", font, (255, 255, 255)),
        ((h // 8, int(h * 0.78)), "BIG SALE -50%", font, (20, 20, 20)),
        ((int(h * 0.55), int(h * 0.92)), "(c) stock-photos 2025", small, (250, 250, 250)),
    ):
        draw.text(xy, text, font=fnt, fill=fill)
        where.text(xy, text, font=fnt, fill=255)
    return np.asarray(img), np.asarray(layer) > 0


def line_sketch(size: int = 512) -> np.ndarray:
    """Black lines on white: a house, a sun and a path, closed shapes."""
    img = np.full((size, size, 3), 255, np.uint8)
    s = size / 512
    t = max(2, int(3 * s))
    cv2.rectangle(img, (int(120 * s), int(250 * s)), (int(300 * s), int(420 * s)), (0, 0, 0), t)
    cv2.line(img, (int(110 * s), int(250 * s)), (int(210 * s), int(150 * s)), (0, 0, 0), t)
    cv2.line(img, (int(210 * s), int(150 * s)), (int(310 * s), int(250 * s)), (0, 0, 0), t)
    cv2.circle(img, (int(400 * s), int(110 * s)), int(50 * s), (0, 0, 0), t)
    cv2.rectangle(img, (int(180 * s), int(330 * s)), (int(230 * s), int(420 * s)), (0, 0, 0), t)
    cv2.line(img, (0, int(420 * s)), (size, int(420 * s)), (0, 0, 0), t)
    return img


def cartoon(size: int = 512) -> np.ndarray:
    """A flat cartoon character on white."""
    img = np.full((size, size, 3), 255, np.uint8)
    s = size / 512
    c = (size // 2, size // 2)
    cv2.ellipse(
        img, (c[0], int(330 * s)), (int(90 * s), int(120 * s)), 0, 0, 360, (240, 160, 40), -1
    )
    cv2.circle(img, (c[0], int(180 * s)), int(80 * s), (250, 210, 170), -1)
    cv2.circle(img, (c[0] - int(28 * s), int(170 * s)), int(10 * s), (20, 20, 20), -1)
    cv2.circle(img, (c[0] + int(28 * s), int(170 * s)), int(10 * s), (20, 20, 20), -1)
    cv2.ellipse(
        img,
        (c[0], int(210 * s)),
        (int(30 * s), int(14 * s)),
        0,
        0,
        180,
        (180, 40, 40),
        max(2, int(4 * s)),
    )
    return img


def ball_mask(size: int = 512) -> np.ndarray:
    """Where :func:`landscape` draws its ball, slightly generous (as a user would paint it)."""
    s = size / 512
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (int(300 * s), int(420 * s)), int(19 * s), 1, -1)
    return mask > 0


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def mask_bytes(mask: np.ndarray) -> bytes:
    return png_bytes(np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2))
