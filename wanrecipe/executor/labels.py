"""The engine labels of a result PNG: ``wanrecipe:fidelity|engine|note`` text chunks.

The emulator's engines put them right after IHDR (``tEXt``, or uncompressed ``iTXt`` when
Latin-1 cannot spell them). Only the chunk headers before the first ``IDAT`` are read: no pixel
decode, a few hundred bytes. A PNG without them (DashScope's) gives None for each.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PREFIX = "wanrecipe:"
#: Text chunks past this many bytes from the start are not looked at.
_MAX_SCAN = 256 * 1024


@dataclass(frozen=True)
class Labels:
    fidelity: str | None = None
    engine: str | None = None
    note: str | None = None


def read_labels(path: Path) -> Labels:
    """The labels of the PNG at ``path`` (all None when it has none or is not a PNG)."""
    found: dict[str, str] = {}
    try:
        with path.open("rb") as f:
            if f.read(8) != _SIGNATURE:
                return Labels()
            scanned = 8
            while scanned < _MAX_SCAN:
                head = f.read(8)
                if len(head) < 8:
                    break
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND"):
                    break
                if kind in (b"tEXt", b"iTXt") and length <= 64 * 1024:
                    text = _decode(kind, f.read(length))
                    f.seek(4, 1)  # CRC
                    if text is not None and text[0].startswith(_PREFIX):
                        found[text[0][len(_PREFIX) :]] = text[1]
                else:
                    f.seek(length + 4, 1)
                scanned += 12 + length
    except OSError:
        return Labels()
    return Labels(found.get("fidelity"), found.get("engine"), found.get("note"))


def _decode(kind: bytes, body: bytes) -> tuple[str, str] | None:
    key, sep, rest = body.partition(b"\0")
    if not sep:
        return None
    try:
        if kind == b"tEXt":
            return key.decode("latin-1"), rest.decode("latin-1")
        # iTXt: compression flag, method, language\0, translated keyword\0, text.
        compressed = rest[:1] == b"\x01"
        _lang, _, rest = rest[2:].partition(b"\0")
        _translated, _, value = rest.partition(b"\0")
        if compressed:
            value = zlib.decompress(value)
        return key.decode("latin-1"), value.decode("utf-8")
    except (UnicodeDecodeError, zlib.error):
        return None
