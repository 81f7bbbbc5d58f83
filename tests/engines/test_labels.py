"""The engine-label contract: three chunks after IHDR, read without decoding pixels, and never
``real`` on an output that equals its input."""

from __future__ import annotations

import numpy as np
import pytest

from wanrecipe import wire
from wanrecipe.emulator.engines import labels
from wanrecipe.emulator.engines.encode import encode_png

from . import scenes


def test_the_three_labels_come_first_and_read_without_a_decode():
    rgb = scenes.landscape(64)
    png = encode_png(rgb, function="colorization", fidelity="approximate", engine="lab-chroma",
                     notes={}, note="colour from a\nscene prior")  # fmt: skip
    found = labels.read_labels(png)
    assert found == {
        labels.FIDELITY_KEY: "approximate",
        labels.ENGINE_KEY: "lab-chroma",
        labels.NOTE_KEY: "colour from a scene prior",
    }
    # Right after IHDR, before any pixel data: cut the file there and they still read.
    idat = png.index(b"IDAT")
    assert labels.read_labels(png[: idat - 4]) == found
    assert png.index(b"wanrecipe:fidelity") < png.index(b"wanrecipe:note") < idat


def test_a_non_latin_note_travels_as_itxt():
    note = "placeholder: 没有规则 '戴上墨镜'"
    png = encode_png(scenes.landscape(32), function="description_edit", fidelity="placeholder",
                     engine="identity", notes={}, note=note)  # fmt: skip
    assert labels.read_labels(png)[labels.NOTE_KEY] == "placeholder: 没有规则 '戴上墨镜'"
    assert b"iTXtwanrecipe:note" in png


def test_the_reader_refuses_what_is_not_a_png():
    assert labels.read_labels(b"GIF89a....") == {}
    assert labels.read_labels(b"") == {}


CASES = [
    ("description_edit", "add sunglasses", {}),
    ("description_edit", "change her hair to red", {}),
    ("description_edit", "make it black and white", {}),
    ("stylization_local", "turn it into a spaceship", {}),
    ("stylization_local", "make the house into ice", {}),
    ("stylization_all", "picture book style", {}),
    ("remove_watermark", "remove the text", {}),
    ("expand", "", {"left_scale": 1.0}),
    ("expand", "", {"left_scale": 1.3}),
    ("super_resolution", "", {"upscale_factor": 2}),
    ("colorization", "", {}),
    ("doodle", "a red house under a blue sky", {}),
    ("control_cartoon_feature", "in a forest", {}),
    ("description_edit_with_mask", "a cat sitting on the bench", {}),
    ("description_edit_with_mask", "remove it", {}),
    ("description_edit_with_mask", "make it blue", {}),
]


@pytest.mark.parametrize(("function", "prompt", "params"), CASES)
def test_never_real_when_the_output_is_the_input(render, function, prompt, params):
    rgb = scenes.landscape(128, ball=True)
    mask = None
    if function in wire.MASK_FUNCTIONS:
        mask = np.zeros(rgb.shape[:2], bool)
        mask[40:80, 40:80] = True
    result, out = render(function, rgb, prompt, mask=mask, **params)
    found = labels.read_labels(result.png)
    assert found[labels.FIDELITY_KEY] == result.fidelity
    assert found[labels.ENGINE_KEY] == result.engine
    assert found[labels.NOTE_KEY] == result.note and result.note
    assert "\n" not in result.note
    if out.shape == rgb.shape and np.array_equal(out, rgb):
        assert result.fidelity != "real", (function, prompt, result.note)
        assert "unchanged" in result.note
    if result.fidelity == "placeholder":
        assert result.note.startswith("placeholder"), result.note
