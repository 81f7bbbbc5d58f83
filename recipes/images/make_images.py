"""Generate the example input images (synthetic, so no licence questions; seeded, so stable).

Run from anywhere: ``python recipes/images/make_images.py``. Each side is 512-768 px, so runs on
the local emulator stay fast while every image passes the API's 512 px minimum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent


def _noise(size: tuple[int, int], seed: int, amount: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, amount, (size[1], size[0], 1))


def _landscape(size: tuple[int, int], seed: int) -> Image.Image:
    """Sky, sun, two ranges of hills, a field and a small house."""
    w, h = size
    im = Image.new("RGB", size)
    px = np.zeros((h, w, 3))
    t = np.linspace(0.0, 1.0, h)[:, None]
    px[..., 0] = 110 + 90 * t
    px[..., 1] = 160 + 60 * t
    px[..., 2] = 235 - 40 * t
    im = Image.fromarray(px.astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((w * 0.72, h * 0.10, w * 0.84, h * 0.10 + w * 0.12), fill=(250, 225, 140))
    xs = np.arange(w + 1)
    far = h * 0.55 + 30 * np.sin(xs / 70.0 + seed) + 18 * np.sin(xs / 23.0)
    near = h * 0.68 + 22 * np.sin(xs / 110.0 + 2 * seed) + 9 * np.sin(xs / 31.0)
    d.polygon([(0, h), *zip(xs, far, strict=True), (w, h)], fill=(90, 120, 150))
    d.polygon([(0, h), *zip(xs, near, strict=True), (w, h)], fill=(70, 140, 70))
    hx, hy = w * 0.3, h * 0.66
    d.rectangle((hx, hy, hx + 70, hy + 50), fill=(200, 170, 130))
    d.polygon([(hx - 10, hy), (hx + 35, hy - 35), (hx + 80, hy)], fill=(150, 60, 50))
    d.rectangle((hx + 28, hy + 22, hx + 42, hy + 50), fill=(90, 60, 40))
    arr = np.asarray(im, dtype=float) + _noise(size, seed, 6.0)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)


def old_photo() -> Image.Image:
    """A faded, grainy, sepia-free grayscale print with a few scratches: colorization input."""
    gray = np.asarray(_landscape((640, 512), 1).convert("L"), dtype=float)
    gray = 40 + gray * 0.7 + _noise((640, 512), 11, 10.0)[..., 0]
    im = Image.fromarray(gray.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    rng = np.random.default_rng(5)
    for _ in range(7):
        x = int(rng.integers(0, 640))
        d.line((x, 0, x + int(rng.integers(-40, 40)), 512), fill=215, width=1)
    return im


def product() -> tuple[Image.Image, Image.Image]:
    """A mug on a table with a watermark across it, and a mask over a stain on the table."""
    w, h = 640, 640
    im = Image.new("RGB", (w, h), (236, 232, 226))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 430, w, h), fill=(170, 125, 85))
    d.rounded_rectangle((230, 230, 400, 450), radius=18, fill=(40, 90, 160))
    d.arc((370, 280, 460, 390), start=-90, end=90, fill=(40, 90, 160), width=18)
    d.ellipse((470, 520, 560, 570), fill=(95, 60, 35))  # the stain to inpaint away
    font = ImageFont.load_default(size=34)
    for i, y in enumerate(range(60, 620, 140)):
        d.text((30 + 50 * (i % 2), y), "SAMPLE (c) STOCK", fill=(250, 250, 250), font=font)
    arr = np.asarray(im, dtype=float) + _noise((w, h), 3, 4.0)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((455, 505, 575, 585), fill=255)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)), mask


def portrait() -> Image.Image:
    """A simple figure in a garden: stylization input (portrait orientation)."""
    im = _landscape((576, 768), 2)
    d = ImageDraw.Draw(im)
    d.ellipse((238, 250, 338, 360), fill=(235, 200, 170))
    d.rounded_rectangle((218, 360, 358, 620), radius=30, fill=(200, 60, 80))
    d.ellipse((262, 290, 276, 304), fill=(40, 30, 30))
    d.ellipse((300, 290, 314, 304), fill=(40, 30, 30))
    d.arc((266, 310, 310, 340), start=20, end=160, fill=(120, 40, 40), width=3)
    return im


def sketch() -> Image.Image:
    """Black line art on white: doodle input."""
    im = Image.new("L", (640, 640), 255)
    d = ImageDraw.Draw(im)
    d.line((0, 470, 640, 470), fill=0, width=4)
    d.polygon([(160, 470), (160, 300), (320, 180), (480, 300), (480, 470)], outline=0, width=5)
    d.rectangle((290, 370, 350, 470), outline=0, width=5)
    d.ellipse((500, 60, 600, 160), outline=0, width=5)
    for x in (60, 100):
        d.line((x, 470, x, 380), fill=0, width=4)
        d.ellipse((x - 35, 320, x + 35, 390), outline=0, width=4)
    return im


def cartoon() -> Image.Image:
    """A round cartoon character on a flat background: control_cartoon_feature input."""
    im = Image.new("RGB", (512, 512), (250, 240, 200))
    d = ImageDraw.Draw(im)
    d.ellipse((136, 96, 376, 336), fill=(255, 205, 60), outline=(60, 40, 20), width=6)
    d.ellipse((196, 170, 236, 220), fill=(255, 255, 255), outline=(60, 40, 20), width=4)
    d.ellipse((276, 170, 316, 220), fill=(255, 255, 255), outline=(60, 40, 20), width=4)
    d.ellipse((208, 186, 228, 210), fill=(20, 20, 20))
    d.ellipse((288, 186, 308, 210), fill=(20, 20, 20))
    d.arc((200, 220, 312, 300), start=20, end=160, fill=(60, 40, 20), width=6)
    d.rounded_rectangle(
        (196, 330, 316, 460), radius=30, fill=(80, 160, 220), outline=(60, 40, 20), width=6
    )
    return im


def main() -> None:
    old_photo().save(HERE / "old-photo.jpg", quality=80, optimize=True)
    shot, mask = product()
    shot.save(HERE / "product.jpg", quality=82, optimize=True)
    mask.save(HERE / "product-mask.png", optimize=True)
    portrait().save(HERE / "portrait.jpg", quality=82, optimize=True)
    _landscape((768, 512), 4).save(HERE / "landscape.jpg", quality=82, optimize=True)
    sketch().save(HERE / "sketch.png", optimize=True)
    cartoon().save(HERE / "cartoon.png", optimize=True)


if __name__ == "__main__":
    main()
