"""Adopting a blob whose digest was computed while it was streamed in: one rename, the
bytes never read again."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import pytest
from PIL import Image

from wanrecipe import images
from wanrecipe.errors import StoreError
from wanrecipe.store import BlobStore


def streamed(store: BlobStore, data: bytes) -> tuple[Path, str]:
    path = store.staging_dir / "download.part"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_adopt_renames_into_place_under_the_given_name(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "objects")
    path, digest = streamed(store, b"result bytes")
    inode = path.stat().st_ino
    blob = store.adopt(path, digest, 12)
    assert blob.path == store.path(digest) and not path.exists()
    assert blob.path.stat().st_ino == inode  # moved, not copied
    assert store.verify(digest) and blob.path.read_bytes() == b"result bytes"
    assert not os.access(blob.path, os.W_OK) or os.geteuid() == 0  # read-only like git objects
    # the same bytes again: the stored blob is kept, the new file dropped
    again, _ = streamed(store, b"result bytes")
    assert store.adopt(again, digest, 12) == blob and not again.exists()


def test_the_digest_is_trusted_not_recomputed(tmp_path: Path) -> None:
    """adopt is for files this process streamed and hashed; it does not read them again (a
    wrong digest given is stored under that name, and verify finds it)."""
    store = BlobStore(tmp_path / "objects")
    path, _ = streamed(store, b"abc")
    wrong = hashlib.sha256(b"other").hexdigest()
    store.adopt(path, wrong, 3)
    assert store.has(wrong) and not store.verify(wrong)


def test_a_size_mismatch_or_missing_file_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "objects")
    path, digest = streamed(store, b"abcd")
    with pytest.raises(StoreError, match="4 bytes on disk, 5 were written"):
        store.adopt(path, digest, 5)
    assert not store.has(digest) and path.exists()
    with pytest.raises(StoreError, match="gone"):
        store.adopt(tmp_path / "nothing", digest, 4)
    with pytest.raises(ValueError):
        store.adopt(path, "not-a-digest", 4)


def test_header_inspection_reads_only_the_first_bytes(tmp_path: Path) -> None:
    png = tmp_path / "big.png"
    Image.new("RGB", (1024, 768), (10, 20, 30)).save(png)
    full = png.read_bytes()
    # A file cut right after its header still reports format and sides: nothing past the
    # header was needed.
    head = tmp_path / "head.png"
    head.write_bytes(full[:100])
    info = images.inspect_header(head)
    assert (info.format, info.width, info.height, info.size_bytes) == ("PNG", 1024, 768, 100)
    assert images.inspect_header(png).size_bytes == len(full)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(images.ImageInputError, match="not a readable image"):
        images.inspect_header(tmp_path / "junk.png")


@pytest.mark.parametrize(
    ("mode", "options"),
    [("1", {}), ("L", {}), ("P", {}), ("RGB", {}), ("RGBA", {}), ("I;16", {}), ("LA", {}),
     ("RGB", {"interlace": 1})],
)  # fmt: skip
def test_a_png_header_read_without_pillow_says_what_pillow_says(
    tmp_path: Path, mode: str, options: dict[str, int]
) -> None:
    path = tmp_path / "x.png"
    Image.new(mode, (37, 23)).save(path, **options)
    with Image.open(path) as im:
        expected = (im.format, im.size[0], im.size[1])
    assert images._png_sides(path.read_bytes()[:64]) == expected[1:]
    info = images.inspect_header(path)
    assert (info.format, info.width, info.height) == expected


def test_an_odd_png_header_is_left_to_pillow(tmp_path: Path) -> None:
    """A PNG whose IHDR is not plainly well-formed is not read by the fast path: Pillow decides
    (and words the error), as before."""
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30)).save(good)
    data = bytearray(good.read_bytes())
    assert images._png_sides(bytes(data)) == (40, 30)
    bad_crc = bytearray(data)
    bad_crc[30] ^= 0xFF  # the IHDR's CRC
    bad_depth = bytearray(data)
    bad_depth[24] = 3  # 3-bit RGB does not exist
    huge = bytearray(data)
    huge[16:24] = (200_000).to_bytes(4, "big") * 2  # 4e10 pixels: a decompression bomb
    for body in (bad_depth, huge):  # each with a correct CRC: refused for what it says
        body[29:33] = zlib.crc32(bytes(body[12:29])).to_bytes(4, "big")
    for name, body in (("crc", bad_crc), ("depth", bad_depth), ("huge", huge)):
        assert images._png_sides(bytes(body)) is None, name
        path = tmp_path / f"{name}.png"
        path.write_bytes(bytes(body))
        with pytest.raises(images.ImageInputError):
            images.inspect_header(path)
    jpeg = tmp_path / "x.jpg"
    Image.new("RGB", (16, 8)).save(jpeg)
    assert images._png_sides(jpeg.read_bytes()) is None
    assert images.inspect_header(jpeg).format == "JPEG"
