"""Hardened decoding and prompt reading."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from wanrecipe.emulator.engines import prompt
from wanrecipe.emulator.engines.decode import decode_image, decode_mask
from wanrecipe.errors import ImageInputError


def save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_bomb_is_refused_before_pixels_load() -> None:
    with pytest.raises(ImageInputError, match=r"exceeds the limit|too many pixels"):
        decode_image(png_declaring(30000, 30000))


def test_garbage_is_refused() -> None:
    with pytest.raises(ImageInputError, match="cannot decode"):
        decode_image(b"not an image at all")


def test_exif_orientation_is_applied() -> None:
    im = Image.new("RGB", (64, 32), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rgb = decode_image(save(im, "JPEG", exif=exif.tobytes()))
    assert rgb.shape == (64, 32, 3)


@pytest.mark.parametrize(
    ("image", "fmt", "expected"),
    [
        (Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG", (255, 255, 255)),  # on white
        (Image.new("LA", (8, 8), (0, 255)), "PNG", (0, 0, 0)),
        (Image.new("P", (8, 8), 0), "PNG", (0, 0, 0)),
        (Image.new("I;16", (8, 8), 65535), "PNG", (255, 255, 255)),  # scaled, not clipped
        (Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", (255, 255, 255)),
        (Image.new("L", (8, 8), 128), "WEBP", (128, 128, 128)),
    ],
)
def test_every_mode_becomes_8bit_rgb(
    image: Image.Image, fmt: str, expected: tuple[int, ...]
) -> None:
    rgb = decode_image(save(image, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    assert np.abs(rgb[4, 4].astype(int) - expected).max() <= 2


def test_only_the_first_frame_is_used() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    rgb = decode_image(buf.getvalue())
    assert rgb[8, 8, 0] > 200 and rgb[8, 8, 2] < 50


def test_mask_threshold_is_128() -> None:
    arr = np.zeros((4, 8), np.uint8)
    arr[:, 4:] = 200
    arr[:, 3] = 127
    mask = decode_mask(save(Image.fromarray(arr), "PNG"), (8, 4))
    assert mask.tolist() == [[False] * 4 + [True] * 4] * 4


@pytest.mark.parametrize(
    ("text", "words", "hit"),
    [
        ("a cool evening", ("cool",), True),
        ("back to school", ("cool",), False),
        ("white clouds", ("cloud",), True),
        ("把房子变成木板风格", ("木板",), True),
        ("make it BLUE", ("blue",), True),
        ("blueberry pie", ("blue",), False),
    ],
)
def test_whole_word_matching(text: str, words: tuple[str, ...], hit: bool) -> None:
    assert prompt.has_any(text, words) is hit


def test_colour_hints_know_background_from_subject() -> None:
    hints = prompt.colour_hints("蓝色背景，黄色的叶子")
    assert [(h.name, h.background) for h in hints] == [("blue", True), ("yellow", False)]
    hints = prompt.colour_hints("a red car and a green sky")
    assert [(h.name, h.background) for h in hints] == [("red", False), ("green", True)]
