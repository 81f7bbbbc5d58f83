"""Real photographs for the engine tests: scikit-image's bundled samples (no download).

Only files that ship inside the scikit-image wheel are read (its ``data`` folder), straight
from disk, so a missing optional fetcher can never reach the network. Each photo is resized
to a small working size so the tests stay fast.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

#: name -> file inside skimage/data; all are bundled in the wheel.
FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "camera": "camera.png",
    "hubble": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
}
COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")


def _folder() -> Path:
    try:
        import skimage
    except ImportError:  # pragma: no cover - scikit-image is in the test extra
        pytest.skip("scikit-image (the test extra) is not installed")
    return Path(skimage.__file__).parent / "data"


@lru_cache(maxsize=32)
def _load(name: str, width: int) -> np.ndarray:
    with Image.open(_folder() / FILES[name]) as im:
        rgb = np.asarray(im.convert("RGB"))
    height = round(width * rgb.shape[0] / rgb.shape[1])
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def photo(name: str, width: int = 320) -> np.ndarray:
    """The named sample as RGB uint8, ``width`` pixels wide (aspect kept); a fresh copy."""
    return _load(name, width).copy()


def grey3(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def chroma_error(out: np.ndarray, truth: np.ndarray) -> float:
    """Mean CIELAB a*b* distance (8-bit OpenCV Lab units) between two RGB images."""
    a = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
    b = cv2.cvtColor(truth, cv2.COLOR_RGB2LAB).astype(np.float32)
    return float(np.sqrt(((a[..., 1:] - b[..., 1:]) ** 2).sum(axis=-1)).mean())


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    err = float((diff[where] if where is not None else diff).__pow__(2).mean())
    return 99.0 if err == 0 else 10.0 * float(np.log10(255.0**2 / err))
