"""Image inspection and references: what the API accepts, checked without decoding pixels.

Used by the recipe checks (local files known at plan time), the runner (preflight before any
submit) and the emulator (validation of what arrives). Decoding pixels for editing is the
engines' job, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
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
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ImageInputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror}") from exc
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
        size = path.stat().st_size
        with Image.open(path) as im:
            return ImageInfo(im.format or "UNKNOWN", im.size[0], im.size[1], size)
    except FileNotFoundError as exc:
        raise ImageInputError(f"{path}: no such file") from exc
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{path}: image declares too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError(f"{path}: not a readable image") from exc


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
