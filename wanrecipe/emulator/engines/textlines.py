"""Classical text-line detection for remove_watermark: candidates, then a glyph check.

Candidates are clusters of strokes that stand out from their surroundings (morphological top-hat
for light marks, black-hat for dark ones, each polarity on its own: a line of text is one
colour), closed along rows into line-shaped boxes. A box is kept only if it reads as *text*:

- at least three glyphs of one polarity, of similar height, standing on a common baseline;
- thin strokes (stroke width well under the glyph height: stars, eyes and highlights are
  filled blobs);
- a score (how far the strokes stand out, relative to the image's own texture) above a floor.

Photos without text keep no box, so the engine leaves them untouched. Faint semi-transparent
text on bright areas and non-text logos are missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .common import working_size

DETECT_MAX_PIXELS = 1024 * 1024
MIN_GLYPHS = 4


@dataclass(frozen=True)
class Line:
    """One accepted line of text, in working-size pixels, and which polarity its strokes have."""

    x: int
    y: int
    w: int
    h: int
    light: bool  # light strokes on a darker ground (else dark on light)
    score: float


def _responses(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    k = max(9, (max(grey.shape) // 60) | 1)  # wider than a stroke, narrower than a glyph row gap
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    light = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel)
    dark = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel)
    return light, dark, k


def glyph_check(strokes: np.ndarray) -> bool:
    """Whether a box of binary strokes (one polarity) holds a line of glyphs."""
    bh = strokes.shape[0]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(strokes, connectivity=8)
    tall = [
        i
        for i in range(1, count)
        if stats[i, cv2.CC_STAT_HEIGHT] >= 0.6 * bh and stats[i, cv2.CC_STAT_AREA] >= 4
    ]
    if len(tall) < MIN_GLYPHS:
        return False
    heights = stats[tall, cv2.CC_STAT_HEIGHT].astype(np.float32)
    bottoms = (stats[tall, cv2.CC_STAT_TOP] + stats[tall, cv2.CC_STAT_HEIGHT]).astype(np.float32)
    med = float(np.median(heights))
    if float(np.median(np.abs(heights - med))) > 0.25 * med:
        return False  # glyphs of one line share a size
    base = float(np.median(bottoms))
    if float(np.median(np.abs(bottoms - base))) > 0.2 * med:
        return False  # ... and a baseline
    dist = cv2.distanceTransform(strokes, cv2.DIST_L2, 3)
    widths = []
    for i in tall:
        x, y, w, h = (int(v) for v in stats[i, :4])
        widths.append(
            2.0 * float(dist[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i].max())
        )
    # Strokes are thin: a glyph is a few strokes, not a filled blob.
    return float(np.median(widths)) <= 0.4 * med


def _lines(response: np.ndarray, level: float, k: int, light: bool) -> list[Line]:
    wh = response.shape[0]
    strokes = np.asarray(
        cv2.morphologyEx(
            (response >= level).astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)
        ),
        np.uint8,
    )
    joined = cv2.morphologyEx(
        strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * k + 1, 3))
    )
    count, _labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    # Glyphs are judged on the fainter strokes too: at the detection level they fragment.
    glyphs = cv2.morphologyEx(
        (response >= 0.5 * level).astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)
    )
    found = []
    for i in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        for y0, y1 in _bands(joined[y : y + bh, x : x + bw] == i, area / float(bw * bh)):
            line = _judge(strokes, glyphs, response, level, (x, y + y0, bw, y1 - y0), wh, light)
            if line is not None:
                found.append(line)
    return found


def _bands(member: np.ndarray, fill: float) -> list[tuple[int, int]]:
    """Row ranges of a candidate to judge: all of it, or, when it is sparse (a line of text
    joined to a neighbouring edge), each run of well-filled rows on its own."""
    if fill >= 0.4:
        return [(0, member.shape[0])]
    rows = member.sum(axis=1)
    dense = rows >= 0.5 * rows.max()
    runs: list[tuple[int, int]] = []
    start = None
    for r, on in enumerate([*dense.tolist(), False]):
        if on and start is None:
            start = r
        elif not on and start is not None:
            runs.append((start, r))
            start = None
    return runs


def _judge(
    strokes: np.ndarray,
    glyphs: np.ndarray,
    response: np.ndarray,
    level: float,
    box: tuple[int, int, int, int],
    wh: int,
    light: bool,
) -> Line | None:
    x, y, bw, bh = box
    if bh < 5 or bh > 0.2 * wh or bw < 2 * bh or bw < 20:
        return None
    cut = strokes[y : y + bh, x : x + bw]
    density = float(cut.mean())
    if not 0.12 <= density <= 0.85:
        return None
    if not glyph_check(glyphs[y : y + bh, x : x + bw]):
        return None
    score = float(response[y : y + bh, x : x + bw][cut > 0].mean()) / max(level, 1.0)
    return Line(x, y, bw, bh, light, score)


def detect(rgb: np.ndarray) -> tuple[np.ndarray, list[Line]]:
    """The stroke mask (dilated a little, full size) of every accepted line, and the lines
    (in working-size pixels)."""
    h, w = rgb.shape[:2]
    ww, wh, scale = working_size(w, h, DETECT_MAX_PIXELS)
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    light, dark, k = _responses(grey)
    both = cv2.max(light, dark)
    # Strong, locally sharp responses only: texture noise has low, diffuse top-hat values.
    level = max(28.0, float(both.mean() + 3.0 * both.std()))
    lines = _lines(light, level, k, True) + _lines(dark, level, k, False)
    found: np.ndarray = np.zeros((wh, ww), bool)
    for line in lines:
        response = light if line.light else dark
        sl = (slice(max(0, line.y - 2), line.y + line.h + 2), slice(max(0, line.x - 2),
              line.x + line.w + 2))  # fmt: skip
        found[sl] |= response[sl] >= 0.5 * level  # fainter antialiasing and serifs too
    grown = cv2.dilate(found.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    if scale < 1:
        grown = cv2.resize(grown, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.asarray(grown > 0), lines
