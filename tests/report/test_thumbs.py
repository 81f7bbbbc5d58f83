"""Thumbnails, engine labels and pixel differences, on real files."""

from __future__ import annotations

import base64
import io
import os

from PIL import Image, PngImagePlugin

from wanrecipe.report.html.svg import dag_svg
from wanrecipe.report.html.thumbs import pixel_diff, png_labels, thumbnail

from .helpers import make_photo, thumb_size


def test_thumbnails_fit_256_px_keep_the_aspect_and_are_jpeg(tmp_path):
    jpeg = tmp_path / "wide.jpg"
    Image.new("RGB", (4000, 1000), (200, 30, 30)).save(jpeg, quality=90)
    thumb = thumbnail(jpeg)
    assert thumb is not None
    assert (thumb.width, thumb.height) == (256, 64) == thumb_size(thumb.src)
    assert (thumb.full_width, thumb.full_height) == (4000, 1000)
    small = thumbnail(jpeg, 128)
    assert small is not None and (small.width, small.height) == (128, 32)


def test_exif_orientation_and_transparency_show_as_they_look(tmp_path):
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.new("RGB", (400, 200), (10, 200, 10)).save(turned, exif=exif)
    thumb = thumbnail(turned)
    assert thumb is not None and thumb.width < thumb.height
    cutout = tmp_path / "cutout.png"
    Image.new("RGBA", (300, 300), (0, 0, 0, 0)).save(cutout)
    thumb = thumbnail(cutout)
    assert thumb is not None
    with Image.open(io.BytesIO(base64.b64decode(thumb.src.split(",", 1)[1]))) as im:
        assert im.convert("L").getextrema()[0] > 240, "transparent reads as white, not black"


def test_hard_links_are_thumbnailed_once_and_a_changed_file_again(tmp_path):
    photo = make_photo(tmp_path / "a.png", (300, 200))
    os.link(photo, tmp_path / "b.png")
    first = thumbnail(photo)
    assert first is not None and thumbnail(tmp_path / "b.png") is first
    make_photo(tmp_path / "c.png", (300, 200), seed=5)
    os.replace(tmp_path / "c.png", photo)
    again = thumbnail(photo)
    assert again is not None and again.src != first.src


def test_unreadable_files_have_no_thumbnail(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert thumbnail(tmp_path / "bad.png") is None
    assert thumbnail(tmp_path / "missing.png") is None
    assert png_labels(tmp_path / "bad.png") == {}


def test_engine_labels_come_from_the_png_text_chunks(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("wanrecipe:fidelity", "placeholder")
    info.add_text("wanrecipe:engine", "identity")
    info.add_text("wanrecipe:note", "returned the input unchanged")
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png", pnginfo=info)
    assert png_labels(tmp_path / "x.png") == {
        "fidelity": "placeholder",
        "engine": "identity",
        "note": "returned the input unchanged",
    }
    Image.new("RGB", (64, 64)).save(tmp_path / "plain.png")
    assert png_labels(tmp_path / "plain.png") == {}


def test_pixel_difference_is_zero_for_equal_images_and_grows_with_change(tmp_path):
    a = make_photo(tmp_path / "a.png", (400, 300))
    with Image.open(a) as im:
        changed = im.copy()
    changed.paste((255, 255, 255), (0, 0, 200, 300))
    changed.save(tmp_path / "b.png")
    same = pixel_diff(a, a)
    diff = pixel_diff(a, tmp_path / "b.png")
    assert same is not None and same.mean_percent == 0
    assert diff is not None and diff.mean_percent > 10 and diff.same_size
    bigger = tmp_path / "big.png"
    changed.resize((800, 600)).save(bigger)
    scaled = pixel_diff(a, bigger)
    assert scaled is not None and not scaled.same_size
    assert pixel_diff(a, tmp_path / "missing.png") is None


def test_the_graph_svg_escapes_ids_and_links_every_node():
    svg = str(
        dag_svg(
            [["a<b"], ["c"]],
            [("a<b", "c")],
            {"a<b": "done", "c": "failed"},
            {"a<b": "colorization", "c": "expand"},
            {"a<b": "step-a<b", "c": "step-c"},
        )
    )
    assert "a<b" not in svg and "a&lt;b" in svg
    assert svg.count("<a href=") == 2 and 'class="dag-node state-failed"' in svg
    assert svg.count('class="dag-edge"') == 1
