"""Hardened decoding: header checks before pixels load, one normalised 8-bit RGB frame."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from wanrecipe import wire
from wanrecipe.errors import ImageInputError

#: Inputs are at most 4096 x 4096 (local-engines.md §3); anything declaring more is a bomb.
MAX_INPUT_PIXELS = wire.IMAGE_MAX_SIDE * wire.IMAGE_MAX_SIDE


def _open(data: bytes, what: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; any such warning is a refusal here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"{what}: image declares too many pixels") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError(f"{what}: cannot decode image ({type(exc).__name__})") from exc
    # Image.open read only the header: refuse huge declared sizes before any pixel is decoded.
    width, height = im.size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        im.close()
        raise ImageInputError(f"{what}: {width}x{height} exceeds the limit of {max_pixels} pixels")
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grey: scale to 8 bits rather than clipping (Pillow's convert clips).
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return im.copy()
    return im.convert("RGB")


def decode_image(
    data: bytes, what: str = "image", max_pixels: int = MAX_INPUT_PIXELS
) -> np.ndarray:
    """Decode ``data`` to an HxWx3 uint8 RGB array: first frame, EXIF orientation applied."""
    im = _open(data, what, max_pixels)
    try:
        try:
            im.seek(0)
            im.load()
            oriented = ImageOps.exif_transpose(im)
            rgb = _to_rgb(oriented)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageInputError(f"{what}: cannot decode image ({type(exc).__name__})") from exc
    finally:
        im.close()
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def decode_mask(
    data: bytes, size: tuple[int, int], max_pixels: int = MAX_INPUT_PIXELS
) -> np.ndarray:
    """Decode a mask to a boolean HxW array (white = edit, threshold 128) of ``size`` (w, h)."""
    rgb = decode_image(data, "mask", max_pixels)
    if (rgb.shape[1], rgb.shape[0]) != size:
        raise ImageInputError(
            f"mask: {rgb.shape[1]}x{rgb.shape[0]} does not match the image's {size[0]}x{size[1]}"
        )
    grey = rgb.astype(np.uint16).sum(axis=2)
    return np.asarray(grey >= 3 * 128)
