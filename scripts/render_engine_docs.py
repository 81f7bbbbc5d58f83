"""Render docs/engines.md's before/after images from the real engines.

Each case runs the engine through ``engines.render`` (the same call the emulator makes) on a
scikit-image sample photo or a test scene, and writes ``docs/images/engines/<name>.jpg``: the
input on the left, the output on the right, 192 px tall. It prints each case's label and note,
which docs/engines.md quotes.

    PYTHONPATH=. .venv/bin/python scripts/render_engine_docs.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "images" / "engines"
HEIGHT = 192
WIDTH = 256  # working width of the inputs

from tests.engines import photos, scenes  # noqa: E402
from tests.engines.conftest import defaults  # noqa: E402
from tests.engines.test_photos_watermark import overlay  # noqa: E402
from wanrecipe.emulator import engines  # noqa: E402
from wanrecipe.emulator.engines.decode import decode_image  # noqa: E402


def _spoon_mask(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(w * 0.6), int(h * 0.72)), (int(w * 0.07), int(h * 0.13)), 0, 0, 360, 1,
                -1)  # fmt: skip
    return mask > 0


def cases() -> list[tuple[str, str, np.ndarray, str, dict[str, Any], np.ndarray | None]]:
    chelsea = photos.photo("chelsea", WIDTH)
    coffee = photos.photo("coffee", WIDTH)
    # The classical detector needs glyphs ~20 px tall: the mark is drawn at 384 px wide.
    marked, _ = overlay(photos.photo("chelsea", 384), "SAMPLE 2025", 255, (0.12, 0.45))
    low = photos.photo("astronaut", WIDTH // 2)
    sides = {k: 1.5 for k in ("left_scale", "right_scale", "top_scale", "bottom_scale")}
    return [
        ("super_resolution", "super_resolution", low, "", {"upscale_factor": 2}, None),
        ("remove_watermark", "remove_watermark", marked, "remove the text", {}, None),
        ("remove_watermark_clean", "remove_watermark", photos.photo("coffee", WIDTH),
         "remove the text", {}, None),
        ("description_edit_with_mask", "description_edit_with_mask", coffee, "", {},
         _spoon_mask(coffee)),
        ("expand", "expand", chelsea, "", sides, None),
        ("description_edit", "description_edit", photos.photo("astronaut", WIDTH),
         "make it warmer", {}, None),
        ("description_edit_placeholder", "description_edit", photos.photo("astronaut", WIDTH),
         "add sunglasses", {}, None),
        ("stylization_all", "stylization_all", coffee, "French picture book", {}, None),
        ("stylization_local", "stylization_local", photos.photo("rocket", WIDTH),
         "turn the sky into clouds", {}, None),
        ("colorization", "colorization", photos.grey3(photos.photo("astronaut", WIDTH)), "", {},
         None),
        ("colorization_hints", "colorization", photos.grey3(photos.photo("rocket", WIDTH)),
         "a blue sky over brown ground", {}, None),
        ("doodle", "doodle", scenes.line_sketch(WIDTH),
         "a red house under a blue sky on green grass", {"is_sketch": True}, None),
        ("control_cartoon_feature", "control_cartoon_feature", scenes.cartoon(WIDTH),
         "in a forest", {}, None),
    ]  # fmt: skip


def _fit(rgb: np.ndarray) -> np.ndarray:
    w = max(1, round(rgb.shape[1] * HEIGHT / rgb.shape[0]))
    interp = cv2.INTER_AREA if rgb.shape[0] > HEIGHT else cv2.INTER_NEAREST
    return cv2.resize(rgb, (w, HEIGHT), interpolation=interp)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, function, img, prompt, params, mask in cases():
        request = engines.EditRequest(
            function=function,
            image=scenes.png_bytes(img),
            prompt=prompt,
            parameters=defaults(function, **params),
            seed=7,
            mask=None if mask is None else scenes.mask_bytes(mask),
        )
        result = engines.render(request)
        out = decode_image(result.png)
        before = img.copy()
        if mask is not None:  # show the mask's outline on the input
            edge = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
            before[edge > 0] = (255, 40, 200)
        gap = np.full((HEIGHT, 6, 3), 255, np.uint8)
        pair = np.hstack([_fit(before), gap, _fit(out)])
        buf = io.BytesIO()
        Image.fromarray(pair).save(buf, format="JPEG", quality=82, optimize=True)
        (OUT / f"{name}.jpg").write_bytes(buf.getvalue())
        print(f"{name}: {result.fidelity} / {result.engine}: {result.note}")


if __name__ == "__main__":
    main()
