"""The engine labels every emulator PNG carries, and a reader that needs no pixel decode.

Three text chunks sit right after IHDR: ``wanrecipe:fidelity`` (``real`` | ``approximate`` |
``placeholder``), ``wanrecipe:engine`` (a name) and ``wanrecipe:note`` (one line: what the engine
did). They are ``tEXt`` when Latin-1 can spell them, else ``iTXt`` (UTF-8, uncompressed) under the
same keyword. :func:`read_labels` walks the chunk headers only and stops at the first ``IDAT``,
so reading them costs nothing next to a decode. Pure standard library: anyone may import it.
"""

from __future__ import annotations

import struct
import zlib

FIDELITY_KEY = "wanrecipe:fidelity"
ENGINE_KEY = "wanrecipe:engine"
NOTE_KEY = "wanrecipe:note"
KEYS = (FIDELITY_KEY, ENGINE_KEY, NOTE_KEY)
FIDELITIES = ("real", "approximate", "placeholder")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A note is one line of at most this many characters.
NOTE_MAX_CHARS = 240


def one_line(text: str, limit: int = NOTE_MAX_CHARS) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def text_chunk(key: str, value: str) -> bytes:
    """A ``tEXt`` chunk, or an uncompressed ``iTXt`` one when ``value`` is not Latin-1."""
    try:
        return chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def label_chunks(fidelity: str, engine: str, note: str) -> bytes:
    """The three label chunks, in contract order."""
    return (
        text_chunk(FIDELITY_KEY, fidelity)
        + text_chunk(ENGINE_KEY, engine)
        + text_chunk(NOTE_KEY, one_line(note))
    )


def _decode_text(kind: bytes, body: bytes) -> tuple[str, str] | None:
    if kind == b"tEXt":
        key, _, value = body.partition(b"\0")
        return key.decode("latin-1"), value.decode("latin-1")
    if kind == b"iTXt":
        key, _, rest = body.partition(b"\0")
        if len(rest) < 2:
            return None
        compressed, rest = rest[0], rest[2:]
        _lang, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        if compressed:
            try:
                text = zlib.decompress(text)
            except zlib.error:
                return None
        return key.decode("latin-1"), text.decode("utf-8", "replace")
    return None


def read_labels(png: bytes) -> dict[str, str]:
    """The ``wanrecipe:*`` text chunks found before the first ``IDAT`` of ``png``.

    Returns a dict with any of :data:`KEYS` present (empty for a PNG without labels, or bytes
    that are not a PNG). Never decodes pixels; stops at the first image-data chunk.
    """
    if not png.startswith(PNG_SIGNATURE):
        return {}
    found: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        body = png[pos + 8 : pos + 8 + length]
        if len(body) < length:
            break
        text = _decode_text(kind, body)
        if text is not None and text[0] in KEYS:
            found[text[0]] = text[1]
        pos += 12 + length
    return found
