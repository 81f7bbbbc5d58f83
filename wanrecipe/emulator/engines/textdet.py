"""Optional neural text detector: PP-OCRv6 det (small) from the ``rapidocr`` wheel, run with
``onnxruntime`` (the ``models`` extra). Loaded from the installed package files, never
downloaded; rapidocr itself is never imported (its pipeline has downloader helpers).

Set ``WANRECIPE_NO_MODELS=1`` to force the classical detector (see ``models``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import models

MODEL_FILE = "models/PP-OCRv6_det_small.onnx"
#: Longest side fed to the detector (multiple of 32). 960 is PaddleOCR's default; 768 finds the
#: same marks at this project's sizes for ~60 % of the time.
MAX_SIDE = 768
THRESHOLD = 0.3
UNCLIP = 1.6


def model_path() -> Path | None:
    """The detector's ONNX file inside the installed rapidocr package, if usable."""
    # Other rapidocr releases ship other PP-OCR generations of the same DB detector.
    return models.find("rapidocr", MODEL_FILE, "models/*det*.onnx")


def _input_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32)


def detect_boxes(rgb: np.ndarray) -> np.ndarray | None:
    """Filled, unclipped text boxes as a boolean HxW mask; None when the model is unavailable."""
    path = model_path()
    if path is None:
        return None
    session = models.session(path)
    h, w = rgb.shape[:2]
    nw, nh = _input_size(w, h)
    x = cv2.resize(rgb[..., ::-1], (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = (x / 255.0 - 0.5) / 0.5
    name = session.get_inputs()[0].name
    prob = session.run(None, {name: x.transpose(2, 0, 1)[None]})[0][0, 0]
    binary = (prob > THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros((h, w), np.uint8)
    sx, sy = w / nw, h / nh
    for contour in contours:
        area = cv2.contourArea(contour)
        perimeter = cv2.arcLength(contour, True)
        if area < 6 or perimeter == 0:
            continue
        (cx, cy), (bw, bh), angle = cv2.minAreaRect(contour)
        grow = area * UNCLIP / perimeter  # the DB detector's "unclip" distance
        box = cv2.boxPoints(((cx, cy), (bw + 2 * grow, bh + 2 * grow), angle))
        box[:, 0] *= sx
        box[:, 1] *= sy
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    return mask > 0
