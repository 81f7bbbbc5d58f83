"""Optional neural text detection: PP-OCR det (small) from the ``rapidocr`` wheel, each box
confirmed by the PP-OCR recogniser from the same wheel, run with ``onnxruntime`` (the
``models`` extra). Loaded from the installed package files, never downloaded; rapidocr itself
is never imported (its pipeline has downloader helpers).

A box survives three filters: its mean text probability (the detector's own score), its shape
(a line of text is elongated; a square blob is an eye or a highlight), and the recogniser,
which must read at least two characters with confidence in it. Photos without text therefore
keep no box. Set ``WANRECIPE_NO_MODELS=1`` to force the classical detector (see ``models``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import models

MODEL_FILE = "models/PP-OCRv6_det_small.onnx"
REC_FILE = "models/PP-OCRv6_rec_small.onnx"
#: Longest side fed to the detector (multiple of 32). 960 is PaddleOCR's default; 768 finds the
#: same marks at this project's sizes for ~60 % of the time.
MAX_SIDE = 768
THRESHOLD = 0.3
UNCLIP = 1.6
#: Mean probability inside a box (PaddleOCR's ``box_thresh`` default is 0.6).
BOX_SCORE = 0.6
#: Long side / short side of a box: text lines are elongated.
MIN_ASPECT = 1.5
#: Mean per-character confidence the recogniser must reach, over at least MIN_CHARS.
REC_CONFIDENCE = 0.6
MIN_CHARS = 2
REC_HEIGHT = 48


@dataclass(frozen=True)
class TextBox:
    polygon: np.ndarray  # 4x2 float32, image pixels
    score: float
    text: str  # as read by the recogniser ("" when it is not installed)
    confidence: float


def model_path() -> Path | None:
    """The detector's ONNX file inside the installed rapidocr package, if usable."""
    # Other rapidocr releases ship other PP-OCR generations of the same DB detector.
    return models.find("rapidocr", MODEL_FILE, "models/*det*.onnx")


def rec_path() -> Path | None:
    """The recogniser's ONNX file inside the installed rapidocr package, if usable."""
    return models.find("rapidocr", REC_FILE, "models/*rec*.onnx")


def _input_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32)


def _candidates(rgb: np.ndarray, path: Path) -> list[tuple[np.ndarray, float]]:
    session = models.session(path)
    h, w = rgb.shape[:2]
    nw, nh = _input_size(w, h)
    x = cv2.resize(rgb[..., ::-1], (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = (x / 255.0 - 0.5) / 0.5
    name = session.get_inputs()[0].name
    prob = session.run(None, {name: x.transpose(2, 0, 1)[None]})[0][0, 0]
    binary = (prob > THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    sx, sy = w / nw, h / nh
    found = []
    for contour in contours:
        area = cv2.contourArea(contour)
        perimeter = cv2.arcLength(contour, True)
        if area < 6 or perimeter == 0:
            continue
        inside: np.ndarray = np.zeros(prob.shape, np.uint8)
        cv2.drawContours(inside, [contour], -1, 1, -1)
        score = float(prob[inside > 0].mean())
        (cx, cy), (bw, bh), angle = cv2.minAreaRect(contour)
        if score < BOX_SCORE or max(bw, bh) < MIN_ASPECT * max(1.0, min(bw, bh)):
            continue
        grow = area * UNCLIP / perimeter  # the DB detector's "unclip" distance
        box = cv2.boxPoints(((cx, cy), (bw + 2 * grow, bh + 2 * grow), angle))
        box[:, 0] *= sx
        box[:, 1] *= sy
        found.append((box.astype(np.float32), score))
    return found


def _crop(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box straightened to a horizontal strip (PaddleOCR's get_rotate_crop_image)."""
    pts = box[np.argsort(box[:, 1])]
    top = pts[:2][np.argsort(pts[:2, 0])]
    bottom = pts[2:][np.argsort(pts[2:, 0])]
    tl, tr, bl, br = top[0], top[1], bottom[0], bottom[1]
    width = max(2, int(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))))
    height = max(2, int(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))))
    src = np.array([tl, tr, br, bl], np.float32)
    dst = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    strip = cv2.warpPerspective(rgb, cv2.getPerspectiveTransform(src, dst), (width, height),
                                borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    if height > 1.5 * width:  # vertical text
        strip = np.ascontiguousarray(np.rot90(strip))
    return np.asarray(strip)


def recognise(rgb: np.ndarray, box: np.ndarray, path: Path) -> tuple[str, float]:
    """What the PP-OCR recogniser reads in ``box``, and its mean per-character confidence."""
    session = models.session(path)
    strip = _crop(rgb, box)
    h, w = strip.shape[:2]
    width = max(8, min(1280, round(w * REC_HEIGHT / h)))
    x = cv2.resize(strip[..., ::-1], (width, REC_HEIGHT), interpolation=cv2.INTER_LINEAR)
    x = (x.astype(np.float32) / 255.0 - 0.5) / 0.5
    name = session.get_inputs()[0].name
    probs = session.run(None, {name: x.transpose(2, 0, 1)[None]})[0][0]  # T x classes
    best = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    keep = best != 0  # CTC blank
    keep[1:] &= best[1:] != best[:-1]  # collapse repeats
    if not keep.any():
        return "", 0.0
    chars = _charset(path)
    text = "".join(chars[i - 1] if 0 < i <= len(chars) else " " for i in best[keep])
    return text.strip(), float(conf[keep].mean())


_CHARSETS: dict[str, list[str]] = {}


def _charset(path: Path) -> list[str]:
    key = str(path)
    if key not in _CHARSETS:
        meta = models.session(path).get_modelmeta().custom_metadata_map
        _CHARSETS[key] = meta.get("character", "").splitlines()
    return _CHARSETS[key]


def detect(rgb: np.ndarray) -> list[TextBox] | None:
    """Confirmed text boxes; None when the detector is unavailable. Without the recogniser
    (an older wheel), boxes pass on score and shape alone."""
    path = model_path()
    if path is None:
        return None
    rec = rec_path()
    boxes = []
    for box, score in _candidates(rgb, path):
        text, confidence = ("", 1.0) if rec is None else recognise(rgb, box, rec)
        if rec is not None and (confidence < REC_CONFIDENCE or len(text.replace(" ", "")) <
                                MIN_CHARS):  # fmt: skip
            continue
        boxes.append(TextBox(box, score, text, confidence))
    return boxes


def box_mask(shape: tuple[int, ...], boxes: list[TextBox]) -> np.ndarray:
    mask: np.ndarray = np.zeros(shape[:2], np.uint8)
    for b in boxes:
        cv2.fillPoly(mask, [np.round(b.polygon).astype(np.int32)], 1)
    return mask > 0


def detect_boxes(rgb: np.ndarray) -> np.ndarray | None:
    """Filled, unclipped, confirmed text boxes as a boolean HxW mask; None when the model is
    unavailable."""
    boxes = detect(rgb)
    return None if boxes is None else box_mask(rgb.shape, boxes)
