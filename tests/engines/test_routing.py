"""Edits go where the prompt says, and say so when they cannot."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from . import photos, scenes
from .conftest import Render


def changed(out: np.ndarray, img: np.ndarray) -> np.ndarray:
    return np.abs(out.astype(np.int16) - img).max(axis=2) > 12


def test_stylization_local_styles_the_sky_when_the_prompt_names_it(render: Render) -> None:
    img = photos.photo("rocket", 256)
    h = img.shape[0]
    result, out = render("stylization_local", img, "turn the sky into clouds")
    assert "the sky" in result.note and result.fidelity == "approximate"
    moved = changed(out, img)
    assert moved[: h // 4].mean() > 0.5, "the sky (top) is styled"
    assert moved[-h // 6 :].mean() < 0.1, "the ground (bottom) is not"


def test_stylization_local_styles_the_main_object_otherwise(render: Render) -> None:
    img = photos.photo("coffee", 256)
    result, out = render("stylization_local", img, "make the cup porcelain")
    assert "main object" in result.note
    moved = changed(out, img)
    h, w = moved.shape
    centre = moved[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean()
    edges = np.concatenate([moved[:, :10].ravel(), moved[:, -10:].ravel()]).mean()
    assert centre > 0.4 and edges < 0.1, (centre, edges)


def test_stylization_local_says_when_the_named_region_is_missing(render: Render) -> None:
    img = photos.photo("chelsea", 256)  # a close-up: no sky
    result, out = render("stylization_local", img, "make the sky wooden")
    assert result.fidelity == "placeholder" and np.array_equal(out, img)
    assert "not found" in result.note and "unchanged" in result.note


@pytest.mark.parametrize(
    ("prompt", "fidelity", "moves", "words"),
    [
        ("", "real", True, "removed"),
        ("A transparent glass vase on the table", "approximate", True, "scene after deletion"),
        ("Add a hat to the puppy", "placeholder", False, "generative model"),
        ("A puppy wearing a hat", "placeholder", False, "generative model"),
        ("给小狗戴上帽子", "placeholder", False, "generative model"),
    ],
)
def test_masked_edit_routes_as_the_guide_does(
    render: Render, prompt: str, fidelity: str, moves: bool, words: str
) -> None:
    img = scenes.landscape(256)
    mask = scenes.ball_mask(256)
    result, out = render("description_edit_with_mask", img, prompt, mask=mask)
    assert result.fidelity == fidelity, result.note
    assert words in result.note
    assert (not np.array_equal(out, img)) is moves
    far = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
    assert np.array_equal(out[far], img[far]), "nothing outside the mask moves"


@pytest.mark.parametrize("prompt", ["add sunglasses", "change her hair to red"])
def test_description_edit_without_a_rule_is_an_honest_placeholder(
    render: Render, prompt: str
) -> None:
    img = photos.photo("astronaut", 192)
    result, out = render("description_edit", img, prompt)
    assert np.array_equal(out, img)
    assert result.fidelity == "placeholder"
    assert result.note == (
        f"placeholder: no edit rule matched '{prompt}' (object-level edits need a generative "
        "model); input returned unchanged"
    )


def test_doodle_colours_follow_nouns_and_positions(render: Render) -> None:
    sketch = scenes.line_sketch(256)
    result, out = render("doodle", sketch, "a red house under a blue sky on green grass",
                         is_sketch=True)  # fmt: skip
    hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.int32)

    def hue_at(y: int, x: int) -> int:
        return int(np.median(hsv[y - 2 : y + 3, x - 2 : x + 3, 0]))

    s = 256 / 512
    assert 95 <= hue_at(int(60 * s), int(60 * s)) <= 130, "sky (top) is blue"
    assert 35 <= hue_at(int(470 * s), int(60 * s)) <= 85, "grass (bottom) is green"
    house = hue_at(int(290 * s), int(150 * s))
    assert house <= 10 or house >= 170, "the house (enclosed) is red"
    assert "blue on the sky" in result.note and "green on the ground" in result.note
