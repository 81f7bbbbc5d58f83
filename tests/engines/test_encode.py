"""Large outputs take OpenCV's fast PNG path and keep every label and pixel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wanrecipe.emulator.engines.encode import HUGE_PNG_PIXELS, encode_png, read_labels


@pytest.mark.parametrize("watermark", [False, True])
def test_huge_outputs_round_trip_with_their_labels(watermark):
    side = int(HUGE_PNG_PIXELS**0.5) + 8
    # Structured, not random, pixels: noise would make zlib (and the test) several times slower.
    yy, xx = np.indices((side, side + 3), dtype=np.uint32)
    rgb = np.stack([(xx * 7) % 256, (yy * 3) % 256, (xx ^ yy) % 256], axis=-1).astype(np.uint8)
    png = encode_png(rgb, function="super_resolution", fidelity="real", engine="lanczos+unsharp",
                     notes={"note": "放大"}, watermark=watermark)  # fmt: skip
    labels = read_labels(png)
    assert labels["wanrecipe:fidelity"] == "real"
    assert labels["wanrecipe:engine"] == "lanczos+unsharp"
    assert '"note": "放大"' in labels["wanrecipe-emulator"]
    with Image.open(io.BytesIO(png)) as im:
        decoded = np.asarray(im.convert("RGB"))
    assert decoded.shape == rgb.shape
    if watermark:
        corner = (slice(-60, None), slice(-160, None))
        assert not np.array_equal(decoded[corner], rgb[corner]), "the mark is drawn"
        assert np.array_equal(decoded[:100, :100], rgb[:100, :100])
    else:
        assert np.array_equal(decoded, rgb)
    again = encode_png(
        rgb, function="super_resolution", fidelity="real", engine="lanczos+unsharp",
        notes={"note": "放大"}, watermark=watermark,
    )  # fmt: skip
    assert again == png, "deterministic"
