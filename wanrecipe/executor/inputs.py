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
from typing import Any, Protocol

from .. import images
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
    #: Set while only identified: the local file whose value is built when the step's slot
    #: is granted (``payloads.Pending``; ``value`` is empty until then).
    pending: Any = None

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
        # Decoding and hashing up to 10 MB: off the event loop.
        info, digest = await asyncio.to_thread(_inspect_data_uri, ref)
        return PreparedInput(ref, redact_url(ref), info, digest)
    return await _local(Path(ref), uploader, upload_threshold)


def _inspect_data_uri(uri: str) -> tuple[ImageInfo, str]:
    _mime, data = images.parse_data_uri(uri)
    info = images.inspect_bytes(data)
    _check(info, "data URI")
    return info, hashlib.sha256(data).hexdigest()


async def _local(
    path: Path, uploader: Uploader, threshold: int, *, label: str | None = None
) -> PreparedInput:
    shown = label or str(path)
    data, info, digest, data_uri = await asyncio.to_thread(_load, path, shown, threshold)
    if data_uri is None:
        oss = await uploader.upload(data, path.name)
        return PreparedInput(oss, f"{shown} (uploaded as {oss})", info, digest)
    return PreparedInput(data_uri, f"{shown} (data URI)", info, digest)


def _load(path: Path, shown: str, threshold: int) -> tuple[bytes, ImageInfo, str, str | None]:
    """Read, check, hash and (up to ``threshold`` bytes) encode a local image: file I/O,
    hashing and base64 of up to 10 MB, so the caller runs it in a thread."""
    data, info = images.load_file(path)
    _check(info, shown)  # an oversized file (no bytes read) stops here
    assert data is not None
    digest = hashlib.sha256(data).hexdigest()
    data_uri = images.to_data_uri(data, info.mime) if len(data) <= threshold else None
    return data, info, digest, data_uri


def _check(info: ImageInfo, label: str) -> None:
    problems = images.input_problems(info)
    if problems:
        raise ImageInputError(f"{label}: " + "; ".join(problems))


def check_mask(image: PreparedInput, mask: PreparedInput) -> None:
    if image.info and mask.info:
        problems = images.mask_problems(image.info, mask.info)
        if problems:
            raise ImageInputError("mask: " + "; ".join(problems))
