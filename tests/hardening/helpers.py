"""Shared pieces of the hardening suite: images made on the fly, the CLI in-process and as a
subprocess, and the emulator's request counters."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import struct
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from PIL import Image

from wanrecipe.cli import main

#: A key that must never appear in anything written: any hit in a sweep is a leak.
FAKE_KEY = "sk-hardeningFAKEKEY0123456789abcdef"
SIGNED_QUERY = "Expires=1999999999&OSSAccessKeyId=LTAIfake&Signature=c2VjcmV0U2lnbmF0dXJl"


def png_bytes(size: tuple[int, int] = (600, 520), mode: str = "RGB", noise: bool = True) -> bytes:
    im = Image.effect_noise(size, 60).convert(mode) if noise else Image.new(mode, size, "white")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (600, 520)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(width: int, height: int, idat: bytes, *, end: bool = True) -> bytes:
    """A PNG with a valid header claiming width x height over the given IDAT bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
    return data + (_chunk(b"IEND", b"") if end else b"")


def random_bytes(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def gray_ramp(size: tuple[int, int] = (600, 520)) -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").resize(size).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def cli(*args: str, cwd: Path | None = None) -> Result:
    """The CLI in-process (fast); exceptions are caught so a traceback shows in the result."""
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=True)
    finally:
        os.chdir(old)


def cli_subprocess(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wanrecipe", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def emulator_stats(origin: str) -> dict[str, Any]:
    """``GET /emulator/stats`` over HTTP, as any client would see it."""
    with urllib.request.urlopen(origin + "/emulator/stats", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def requests_seen(stats: dict[str, Any]) -> int:
    """Every API request the emulator counted (submits accepted or not, queries, ...)."""
    return int(
        stats["submissions"]["attempts"]
        + stats["queries"]
        + stats["lists"]
        + stats["cancels"]
        + stats["downloads"]
        + stats["uploads"]
    )
