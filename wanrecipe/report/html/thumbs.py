"""Thumbnails, engine labels and pixel differences for the report pages.

Thumbnails are small JPEG data URIs (at most 256 px a side). They are made from the file with as
little decoding as the format allows: a JPEG decodes at 1/2, 1/4 or 1/8 scale (``draft``), any
image is first shrunk by an integer factor (``reduce``, a box filter on whole blocks) and only
the last step resamples. Full-size images are never re-encoded: the page links to the files.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

#: The longest side of a thumbnail, in pixels (the issue's ceiling).
MAX_SIDE = 256
#: Thumbnails in a batch grid (500 rows on one page): smaller still.
GRID_SIDE = 128
_QUALITY = 72
#: PNGs from this size on are decoded with OpenCV (faster on big images); below it Pillow's
#: decoder takes a few ms, less than importing OpenCV and numpy (about 0.3 s), which a short
#: run would otherwise pay at its end.
_OPENCV_FROM_BYTES = 1024 * 1024
#: The engine labels every emulator output carries (tEXt chunks before the image data).
LABEL_KEYS = ("fidelity", "engine", "note")
FIDELITIES = ("real", "approximate", "placeholder")


@dataclass(frozen=True)
class Thumb:
    src: str  # data:image/jpeg;base64,...
    width: int  # of the thumbnail
    height: int
    full_width: int  # of the file
    full_height: int


_cache: dict[tuple[int, int, int, int, int], Thumb | None] = {}
_lock = threading.Lock()


def thumbnail(path: Path, side: int = MAX_SIDE) -> Thumb | None:
    """A JPEG data URI of ``path`` fitting ``side`` px, or None when it cannot be read.

    Remembered per file (device and inode, so the hard links the image store makes into every
    run and row directory count as one; size and mtime) for the life of the process: a batch
    writes each row's page and the grid from the same files, rows sharing a step share images.
    """
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, side)
    with _lock:
        if key in _cache:
            return _cache[key]
    if side < MAX_SIDE:
        # A batch grid shows what the row pages already made: shrink that, not the file.
        big = thumbnail(path, MAX_SIDE)
        thumb = _from_thumb(big, side) if big is not None else None
    else:
        thumb = _make(path, side)
    with _lock:
        _cache[key] = thumb
    return thumb


def _make(path: Path, side: int) -> Thumb | None:
    try:
        with Image.open(path) as im:
            full = im.size
            big_png = im.format == "PNG" and path.stat().st_size >= _OPENCV_FROM_BYTES
            small = _png_small(path, side) if big_png else None
            if small is None:
                small = shrink(im, side)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return Thumb(_jpeg_uri(small), small.width, small.height, full[0], full[1])


def _png_small(path: Path, side: int) -> Image.Image | None:
    """A PNG shrunk with OpenCV, whose PNG decoder is about 1.5x Pillow's (a PNG cannot be
    decoded at a reduced scale, so decoding is most of the work). None: let Pillow do it."""
    import cv2
    import numpy as np

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.ndim not in (2, 3):
        return None
    if pixels.dtype == np.uint16:
        pixels = (pixels / 257).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        return None
    h, w = pixels.shape[:2]
    scale = min(1.0, side / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 1.0:
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    if pixels.ndim == 2:
        return Image.fromarray(pixels).convert("RGB")
    if pixels.shape[2] == 4:  # transparent pixels over white, as _flatten does
        alpha = pixels[..., 3:4].astype(np.float32) / 255
        pixels = (pixels[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    elif pixels.shape[2] != 3:
        return None
    return Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))


def _from_thumb(big: Thumb, side: int) -> Thumb | None:
    data = base64.b64decode(big.src.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (side, side))
        small = im.convert("RGB")
        small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return Thumb(_jpeg_uri(small), small.width, small.height, big.full_width, big.full_height)


def shrink(im: Image.Image, side: int) -> Image.Image:
    """``im`` (still lazily opened) as an RGB image fitting ``side`` px."""
    if im.format == "JPEG":
        im.draft("RGB", (side, side))  # decode at 1/2, 1/4 or 1/8 scale
    if im.format == "JPEG" and im.getexif().get(0x0112, 1) != 1:  # an EXIF orientation
        im = ImageOps.exif_transpose(im) or im
    factor = max(1, min(im.width, im.height) // side, max(im.width, im.height) // (side * 2))
    if im.mode not in ("RGB", "L"):
        im = _flatten(im)
    if factor > 1:
        im = im.reduce(factor)
    im = im.convert("RGB")
    im.thumbnail((side, side), Image.Resampling.BILINEAR)
    return im


def _flatten(im: Image.Image) -> Image.Image:
    """Transparent pixels over white (a mask or cut-out reads as it looks, not as black)."""
    rgba = im.convert("RGBA")
    back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(back, rgba).convert("RGB")


def _jpeg_uri(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=_QUALITY, optimize=False)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_labels(path: Path) -> dict[str, str]:
    """The ``wanrecipe:fidelity`` / ``engine`` / ``note`` text chunks of an image file, read
    from its header chunks only (opening does not decode the pixels). Empty when absent."""
    try:
        with Image.open(path) as im:
            info = dict(im.info)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return {}
    found: dict[str, str] = {}
    for key in LABEL_KEYS:
        value = info.get(f"wanrecipe:{key}")
        if isinstance(value, str) and value.strip():
            found[key] = value.strip()[:500]
    return found


@dataclass(frozen=True)
class PixelDiff:
    thumb: Thumb
    #: Mean absolute difference per channel, 0..100 % (of the thumbnails, same size).
    mean_percent: float
    same_size: bool


def pixel_diff(a: Path, b: Path, side: int = MAX_SIDE) -> PixelDiff | None:
    """A thumbnail of |a - b| (amplified so small changes show) and the mean difference, made
    from both images shrunk to the same size. None when either cannot be read."""
    try:
        with Image.open(a) as ia, Image.open(b) as ib:
            same = ia.size == ib.size
            sa = shrink(ia, side)
            sb = shrink(ib, side)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    if sb.size != sa.size:
        sb = sb.resize(sa.size, Image.Resampling.BILINEAR)
    diff = ImageChops.difference(sa, sb)
    hist = diff.convert("L").histogram()
    total = sum(hist) or 1
    mean = sum(i * n for i, n in enumerate(hist)) / total / 255 * 100
    shown = ImageOps.autocontrast(diff.convert("L"), cutoff=0)
    shown = ImageOps.invert(shown)  # unchanged pixels white, changes dark
    thumb = Thumb(_jpeg_uri(shown.convert("RGB")), sa.width, sa.height, sa.width, sa.height)
    return PixelDiff(thumb, round(mean, 2), same)
