"""Turning a rendered image reference into what goes into a request.

- a step output (:class:`StepImage`) goes as its live result URL while that URL lives and the
  backend is the one that made it, and as the local copy otherwise;
- a local file goes as a data URI up to ``upload_threshold`` bytes, and through the upload
  policy flow (``oss://``) above it: a data URI costs no extra round trip and leaves nothing
  behind, an upload keeps a large JSON body off the submit;
- http(s) URLs, ``oss://`` references and data URIs pass through.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import images, wire
from ..errors import ImageInputError
from ..images import ImageInfo
from ..redact import redact_url

#: Local files up to this size go inline as data URIs; larger ones are uploaded.
DEFAULT_UPLOAD_THRESHOLD = 5 * 1024 * 1024
#: Result URLs live 24 h; stop trusting one a while before that.
URL_SAFETY_MARGIN_S = 15 * 60


@dataclass(frozen=True)
class StepImage:
    """One output image of a finished step: its local copy and, while valid, its live URL."""

    step: str
    index: int
    path: Path
    sha256: str
    size: int
    width: int
    height: int
    url: str | None
    url_valid_until: float  # epoch seconds
    backend: str

    def __str__(self) -> str:
        return str(self.path)

    @property
    def info(self) -> ImageInfo:
        return ImageInfo("PNG", self.width, self.height, self.size)


class Uploader(Protocol):
    async def upload(self, data: bytes, filename: str) -> str: ...


@dataclass(frozen=True)
class PreparedInput:
    value: str  # what the request carries
    shown: str  # what the run record shows (no secrets, no payloads)
    info: ImageInfo | None  # None for remote URLs we did not fetch
    sha256: str | None

    @property
    def is_oss(self) -> bool:
        return self.value.startswith("oss://")


async def prepare_input(
    ref: object,
    *,
    backend: str,
    uploader: Uploader,
    upload_threshold: int = DEFAULT_UPLOAD_THRESHOLD,
    now: float | None = None,
) -> PreparedInput:
    """Resolve ``ref`` (str or StepImage) to a request value; raises ImageInputError."""
    now = time.time() if now is None else now
    if isinstance(ref, StepImage):
        if ref.url and ref.backend == backend and now < ref.url_valid_until - URL_SAFETY_MARGIN_S:
            return PreparedInput(ref.url, redact_url(ref.url), ref.info, ref.sha256)
        return await _local(ref.path, uploader, upload_threshold, label=f"steps.{ref.step}")
    if isinstance(ref, Path):
        return await _local(ref, uploader, upload_threshold)
    if not isinstance(ref, str):
        raise ImageInputError(f"an image must be a path, URL or step output, not {ref!r}")
    if images.is_remote(ref):
        return PreparedInput(ref, redact_url(ref), None, None)
    if images.is_data_uri(ref):
        _mime, data = images.parse_data_uri(ref)
        info = images.inspect_bytes(data)
        _check(info, "data URI")
        return PreparedInput(ref, redact_url(ref), info, hashlib.sha256(data).hexdigest())
    return await _local(Path(ref), uploader, upload_threshold)


async def _local(
    path: Path, uploader: Uploader, threshold: int, *, label: str | None = None
) -> PreparedInput:
    data = await asyncio.to_thread(_read, path)
    info = images.inspect_bytes(data)
    _check(info, label or str(path))
    digest = hashlib.sha256(data).hexdigest()
    shown = label or str(path)
    if len(data) > threshold:
        oss = await uploader.upload(data, path.name)
        return PreparedInput(oss, f"{shown} (uploaded as {oss})", info, digest)
    return PreparedInput(images.to_data_uri(data, info.mime), f"{shown} (data URI)", info, digest)


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > wire.IMAGE_MAX_BYTES:
            raise ImageInputError(f"{path}: {size / 2**20:.1f} MB: images may be at most 10 MB")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageInputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror}") from exc


def _check(info: ImageInfo, label: str) -> None:
    problems = images.input_problems(info)
    if problems:
        raise ImageInputError(f"{label}: " + "; ".join(problems))


def check_mask(image: PreparedInput, mask: PreparedInput) -> None:
    if image.info and mask.info:
        problems = images.mask_problems(image.info, mask.info)
        if problems:
            raise ImageInputError("mask: " + "; ".join(problems))
