"""What every engine receives and returns, plus small shared numeric helpers."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

Fidelity = Literal["real", "approximate", "placeholder"]


@dataclass
class Budget:
    """A per-task time budget spent on *predicted* costs, not on the wall clock.

    Heavy steps ask before they run; the answer depends only on the input sizes, so the same
    request always takes the same path and gives the same bytes, however loaded the machine is.
    """

    seconds: float
    spent: float = 0.0

    def allow(self, cost: float) -> bool:
        if self.spent + cost > self.seconds:
            return False
        self.spent += cost
        return True


@dataclass
class Job:
    """One edit as an engine sees it: decoded pixels, not bytes."""

    function: str
    rgb: np.ndarray  # HxWx3 uint8
    prompt: str
    parameters: Mapping[str, Any]
    seed: int
    index: int
    mask: np.ndarray | None  # HxW bool, True = edit
    budget: Budget  # heavy steps take their fast path once it is spent

    def rng(self, salt: str = "") -> np.random.Generator:
        """A generator seeded from the seed, the prompt and a salt: same inputs, same draws."""
        key = zlib.crc32(f"{self.prompt}\x00{salt}".encode())
        return np.random.default_rng([self.seed & 0xFFFFFFFF, key])

    def cv_seed(self, salt: str = "") -> int:
        return (zlib.crc32(f"{self.seed}:{self.prompt}:{salt}".encode()) & 0x7FFFFFFF) or 1


@dataclass
class Outcome:
    rgb: np.ndarray
    fidelity: Fidelity
    engine: str
    notes: dict[str, str] = field(default_factory=dict)
    #: One line for the user: what the engine really did (the ``wanrecipe:note`` chunk).
    note: str = ""


def placeholder(job: Job, reason: str, engine: str = "identity") -> Outcome:
    """The honest answer where only a generative model could do the edit: the input pixels."""
    note = f"placeholder: {reason}; input returned unchanged"
    return Outcome(job.rgb.copy(), "placeholder", engine, {"reason": reason}, note)


def to_u8(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def blend(orig: np.ndarray, styled: np.ndarray, amount: float) -> np.ndarray:
    """``(1-a)·orig + a·styled`` in uint8 (amount in [0, 1])."""
    a = float(min(max(amount, 0.0), 1.0))
    return cv2.addWeighted(orig, 1.0 - a, styled, a, 0.0)


def resize_to(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    shrinking = width * height < arr.shape[0] * arr.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(arr, (width, height), interpolation=interp)


def working_size(width: int, height: int, max_pixels: int) -> tuple[int, int, float]:
    """A size of at most ``max_pixels`` with the same aspect, and the scale factor to it."""
    scale = min(1.0, (max_pixels / float(width * height)) ** 0.5)
    return max(1, round(width * scale)), max(1, round(height * scale)), scale


def fbm(
    rng: np.random.Generator, height: int, width: int, octaves: int = 5, base: int = 4
) -> np.ndarray:
    """Fractal noise in [0, 1]: random grids upsampled and summed with halving weights."""
    out = np.zeros((height, width), np.float32)
    total = 0.0
    amp = 1.0
    cells = base
    for _ in range(octaves):
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cells *= 2
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo + 1e-6)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma as float32 in [0, 255]."""
    f = rgb.astype(np.float32)
    return np.asarray(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2], np.float32)


def xdog(
    grey: np.ndarray, sigma: float = 0.8, k: float = 1.6, p: float = 30.0, eps: float = 0.01
) -> np.ndarray:
    """Extended difference of Gaussians line drawing; 1 = paper, 0 = ink."""
    g = grey.astype(np.float32) / 255.0
    a = cv2.GaussianBlur(g, (0, 0), sigma)
    b = cv2.GaussianBlur(g, (0, 0), sigma * k)
    d = (1 + p) * a - p * b
    return np.where(d >= eps, 1.0, 1.0 + np.tanh(40.0 * (d - eps))).astype(np.float32)
