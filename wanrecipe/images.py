"""Image inspection and references: what the API accepts, and whether the data decodes.

Used by the recipe checks (local files known at plan time), the runner (preflight before any
submit) and the emulator (validation of what arrives). Decoding pixels for editing is the
engines' job, not this module's.

Two separate checks. The header says what an image claims to be (``inspect_bytes``: cheap,
first bytes). ``check_decodes`` then checks that the data behind it is really there: a
truncated PNG, or one whose header says 4096x4096 over corrupt data, is refused before it
reaches a backend. It is bounded in memory and time: a PNG is checked by streaming its
compressed data through zlib (no pixel buffer: the decompressed size is only counted), a JPEG
is decoded at 1/8 scale (Pillow's draft mode), other formats (BMP, TIFF, WEBP: at most 10 MB
and 4096 px a side by then) are decoded whole. ``check_file_decodes`` caches by file version,
so a file used by many steps, or checked by ``validate`` and again by ``run``, is decoded once.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from . import wire
from .errors import ImageInputError

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),", re.ASCII)
#: base64 of IMAGE_MAX_BYTES, plus slack for line breaks: refuse longer data URIs undecoded.
MAX_DATA_URI_CHARS = (wire.IMAGE_MAX_BYTES * 4) // 3 + 1024


@dataclass(frozen=True)
class ImageInfo:
    """What the API cares about in an image file."""

    format: str  # Pillow's name: JPEG, PNG, BMP, TIFF, WEBP, ... (or another it recognised)
    width: int
    height: int
    size_bytes: int

    @property
    def mime(self) -> str:
        return wire.IMAGE_FORMATS.get(self.format, "application/octet-stream")


def inspect_bytes(data: bytes) -> ImageInfo:
    """Read format and size from the header only. Raises ImageInputError if not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or "UNKNOWN"
            width, height = im.size
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"image declares too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError("not a readable image (JPEG, PNG, BMP, TIFF or WEBP)") from exc
    return ImageInfo(fmt, width, height, len(data))


def inspect_file(path: Path) -> ImageInfo:
    """Like inspect_bytes, for a file; a file over the size limit is refused before reading."""
    return load_file(path)[1]


def load_file(path: Path) -> tuple[bytes | None, ImageInfo]:
    """The file's bytes and what the API cares about, reading it once; bytes are None for a
    file over the size limit (only its header is read: it cannot be sent anyway)."""
    if "\0" in str(path):
        raise ImageInputError(f"{shown_path(path)}: the path contains a NUL byte")
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ImageInputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:  # a path the OS cannot take at all
        raise ImageInputError(f"{shown_path(path)}: not a usable path ({exc})") from exc
    if not path.is_file():
        raise ImageInputError(f"{path}: not a file")
    if size > wire.IMAGE_MAX_BYTES:
        return None, _size_only(path, size)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return data, inspect_bytes(data)
    except ImageInputError as exc:
        raise ImageInputError(f"{path}: {exc}") from exc


def inspect_header(path: Path) -> ImageInfo:
    """Format and sides from the file's first bytes (the header Pillow needs), without reading
    the rest: for files we wrote ourselves, such as downloaded results. Raises
    ImageInputError if it is not an image."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            sides = _png_sides(f.read(_PNG_HEAD))
            if sides is not None:
                return ImageInfo("PNG", sides[0], sides[1], size)
            f.seek(0)
            with Image.open(f) as im:
                return ImageInfo(im.format or "UNKNOWN", im.size[0], im.size[1], size)
    except FileNotFoundError as exc:
        raise ImageInputError(f"{path}: no such file") from exc
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{path}: image declares too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError(f"{path}: not a readable image") from exc


#: The PNG signature and its IHDR chunk (length, type, 13 bytes of data, CRC).
_PNG_HEAD = 8 + 8 + 13 + 4
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bit depths each PNG colour type allows (the PNG spec, table 11.1).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _png_sides(head: bytes) -> tuple[int, int] | None:
    """A well-formed PNG header's (width, height) from its first 33 bytes, read with struct
    rather than Pillow (most results are PNGs: this is the download's hot path). None for
    anything else, even a PNG whose IHDR is odd: Pillow then decides, and words the error."""
    if len(head) < _PNG_HEAD or not head.startswith(_PNG_SIGNATURE):
        return None
    length, kind = struct.unpack_from(">I4s", head, 8)
    if length != 13 or kind != b"IHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", head, 16
    )
    (crc,) = struct.unpack_from(">I", head, 29)
    if zlib.crc32(head[12:29]) != crc or not (0 < width < 2**31 and 0 < height < 2**31):
        return None
    if depth not in _PNG_DEPTHS.get(colour, ()) or (compression, filtering) != (0, 0):
        return None
    if interlace > 1:
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > 2 * limit:
        return None  # Pillow refuses it as a decompression bomb
    return width, height


def shown_path(path: Path | str) -> str:
    """A path as it may be printed: control characters (a NUL byte, ...) escaped."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _size_only(path: Path, size: int) -> ImageInfo:
    # Too big to send anyway; still report format and sides when the header says them.
    try:
        with Image.open(path) as im:
            return ImageInfo(im.format or "UNKNOWN", im.size[0], im.size[1], size)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return ImageInfo("UNKNOWN", 0, 0, size)


def input_problems(info: ImageInfo) -> list[str]:
    """What the service would refuse about this image, as sentences (empty when fine)."""
    problems = []
    if info.format not in wire.IMAGE_FORMATS:
        problems.append(f"format {info.format} is not accepted (use JPEG, PNG, BMP, TIFF or WEBP)")
    lo, hi = wire.IMAGE_MIN_SIDE, wire.IMAGE_MAX_SIDE
    if info.width and info.height and not (lo <= info.width <= hi and lo <= info.height <= hi):
        problems.append(
            f"{info.width}x{info.height} px: each side must be between {lo} and {hi} px"
        )
    if info.size_bytes > wire.IMAGE_MAX_BYTES:
        mb = info.size_bytes / (1024 * 1024)
        problems.append(f"{mb:.1f} MB: images may be at most 10 MB")
    return problems


def mask_problems(image: ImageInfo, mask: ImageInfo) -> list[str]:
    if (image.width, image.height) != (mask.width, mask.height):
        return [
            f"the mask is {mask.width}x{mask.height} px but the image is "
            f"{image.width}x{image.height} px; they must be the same size"
        ]
    return []


def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def parse_data_uri(uri: str) -> tuple[str, bytes]:
    """Split a base64 data URI into (mime, bytes). Raises ImageInputError."""
    m = _DATA_URI.match(uri)
    if not m:
        raise ImageInputError("malformed data URI (expected data:<mime>;base64,<data>)")
    if ";base64" not in (m.group("params") or "").lower():
        raise ImageInputError("data URI is not base64-encoded")
    payload = uri[m.end() :]
    if len(payload) > MAX_DATA_URI_CHARS:
        raise ImageInputError("data URI holds more than 10 MB")
    try:
        data = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError("data URI is not valid base64") from exc
    return (m.group("mime") or "application/octet-stream").lower(), data


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://", "oss://"))


def is_data_uri(ref: str) -> bool:
    return ref.startswith("data:")


# -- does it decode -----------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Inflate at most this much at once: memory stays flat whatever the header claims.
_INFLATE_STEP = 1 << 20
#: Mask pixels counted as black or white: at most this far from 0 or 255.
_MASK_TOLERANCE = 16
#: A mask with more gray pixels than this share gets a warning.
MASK_GRAY_SHARE = 0.02
_MASK_SAMPLE = (512, 512)

_CACHE: OrderedDict[tuple[object, ...], str | None] = OrderedDict()
_CACHE_SIZE = 512


def check_decodes(data: bytes) -> None:
    """Raise ImageInputError when ``data`` (an image whose header was read) does not decode."""
    if data.startswith(_PNG_SIGNATURE):
        _check_png(data)
        return
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
        raise ImageInputError(f"the image data is damaged or incomplete ({_reason(exc)})") from exc


def check_file_decodes(path: Path, data: bytes | None = None) -> None:
    """``check_decodes`` for a file, once per file version (path, size, mtime, inode)."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return  # reported by the header check
    key = ("decode", os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        problem = _CACHE[key]
    else:
        try:
            check_decodes(data if data is not None else path.read_bytes())
            problem = None
        except ImageInputError as exc:
            problem = str(exc)
        except OSError as exc:
            problem = f"cannot read: {exc.strerror}"
        _remember(key, problem)
    if problem is not None:
        raise ImageInputError(problem)


def gray_share(data: bytes) -> float:
    """The share of a mask's pixels that are neither black nor white (on a sample)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            im.draft("L", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
        gray = im.convert("L")
    gray.thumbnail(_MASK_SAMPLE, Image.Resampling.NEAREST)
    histogram = gray.histogram()
    total = sum(histogram) or 1
    middle = sum(histogram[_MASK_TOLERANCE + 1 : 255 - _MASK_TOLERANCE])
    return middle / total


def _remember(key: tuple[object, ...], problem: str | None) -> None:
    _CACHE[key] = problem
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _check_png(data: bytes) -> None:
    pos = len(_PNG_SIGNATURE)
    inflater = zlib.decompressobj()
    inflated = 0
    expected: int | None = None
    seen_end = False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body_end = pos + 8 + length
        if body_end + 4 > len(data):
            raise _damaged(f"chunk {kind.decode('latin-1')!r} is cut off: the file is truncated")
        body = data[pos + 8 : body_end]
        (crc,) = struct.unpack(">I", data[body_end : body_end + 4])
        if zlib.crc32(kind + body) != crc:
            raise _damaged(f"chunk {kind.decode('latin-1')!r} fails its checksum")
        if kind == b"IHDR":
            expected = _png_raw_size(body)
        elif kind == b"IDAT":
            inflated += _inflate(inflater, body)
        elif kind == b"IEND":
            seen_end = True
            break
        pos = body_end + 4
    if not seen_end:
        raise _damaged("no end chunk: the file is truncated")
    if not inflater.eof:
        raise _damaged("the compressed pixel data ends early")
    if expected is not None and inflated != expected:
        raise _damaged(
            f"the header's size needs {expected:,} bytes of pixel data, the file has {inflated:,}"
        )


def _inflate(inflater: zlib._Decompress, chunk: bytes) -> int:
    count = 0
    pending = chunk
    try:
        while pending:
            out = inflater.decompress(pending, _INFLATE_STEP)
            count += len(out)
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise _damaged(f"the compressed pixel data is corrupt ({exc})") from exc
    return count


def _png_raw_size(ihdr: bytes) -> int | None:
    if len(ihdr) != 13:
        raise _damaged("the header chunk has the wrong length")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    channels = _PNG_CHANNELS.get(color)
    if channels is None or interlace:
        return None  # interlaced: checked for completeness (zlib end), not for exact size
    row = (width * channels * depth + 7) // 8
    return int(height * (1 + row))


def _damaged(reason: str) -> ImageInputError:
    return ImageInputError(f"the image data is damaged or incomplete ({reason})")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]
