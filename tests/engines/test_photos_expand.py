"""expand on real photographs: nothing cloned from the subject, seams that do not show."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from . import photos
from .conftest import Render

ALL_SIDES = {"left_scale": 1.5, "right_scale": 1.5, "top_scale": 1.5, "bottom_scale": 1.5}


def border(out: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int]]:
    """The new-area mask of an all-sides 1.5 expand, and the original's offset."""
    h, w = shape[:2]
    top, left = round(h * 0.25), round(w * 0.25)
    new = np.ones(out.shape[:2], bool)
    new[top : top + h, left : left + w] = False
    return new, (top, left)


WIDTH = 176


def box(y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice]:
    """A feature's place as shares of a 320-px-wide photo, at WIDTH."""
    k = WIDTH / 320
    return slice(round(y0 * k), round(y1 * k)), slice(round(x0 * k), round(x1 * k))


@pytest.mark.parametrize(("name", "feature"), [
    ("chelsea", box(70, 115, 80, 130)),  # the left eye
    ("astronaut", box(40, 110, 105, 150)),  # the face
])  # fmt: skip
def test_the_subject_is_never_cloned_into_the_new_area(
    render: Render, name: str, feature: tuple[slice, slice]
) -> None:
    img = photos.photo(name, WIDTH)
    result, out = render("expand", img, "", **ALL_SIDES)
    assert result.fidelity == "approximate" and "subject kept out" in result.note
    new, (top, left) = border(out, img.shape)
    assert np.array_equal(out[top : top + img.shape[0], left : left + img.shape[1]], img)
    patch = cv2.cvtColor(img[feature], cv2.COLOR_RGB2GRAY)
    score = cv2.matchTemplate(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), patch, cv2.TM_CCOEFF_NORMED)
    ph, pw = patch.shape
    # Positions whose window lies wholly in the new area.
    inside = cv2.erode(new.astype(np.uint8), np.ones((ph, pw), np.uint8), anchor=(0, 0))
    inside = inside[: score.shape[0], : score.shape[1]] > 0
    # A cloned face or eye matches at ~0.95; unrelated background stays far below.
    assert float(score[inside].max()) < 0.75, "a copy of the subject appears in the border"


def test_the_seams_neither_step_nor_blur(render: Render) -> None:
    img = photos.photo("chelsea", WIDTH)
    _, out = render("expand", img, "", **ALL_SIDES)
    _, (top, left) = border(out, img.shape)
    h = img.shape[0]
    f = out.astype(np.float32)
    rows = slice(top, top + h)
    # The step across the seam is no bigger than the original's own steps next to it.
    step = np.abs(f[rows, left] - f[rows, left - 1]).mean()
    own = np.abs(f[rows, left + 2] - f[rows, left + 1]).mean()
    assert step <= 2.0 * own + 2.0, (step, own)
    # Detail just outside the seam is comparable to detail just inside (no soft band).
    lap = np.abs(cv2.Laplacian(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.CV_32F))
    outside = lap[rows, left - 8 : left - 1].mean()
    inside = lap[rows, left + 1 : left + 8].mean()
    assert outside >= 0.5 * inside, (outside, inside)
