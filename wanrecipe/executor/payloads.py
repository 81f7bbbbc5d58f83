"""Image inputs for a whole run: identified when a step is ready, sent-ready only when its slot
is granted, and shared per input digest.

A step needs two things from its input, at two moments:

- when it becomes ready: what the content key needs (the sha256 and the header: format and
  sides). :meth:`Payloads.identify` works it out by reading the file once per (path, mtime,
  size) for the whole run, and keeps no bytes;
- when its slot is granted: the request value (a data URI, or an ``oss://`` URL of an
  upload). :meth:`Payloads.acquire` builds it once per digest and hands the same object to
  every step that asks while it lives; :meth:`Payloads.release` drops it when no step that
  claimed it still waits to submit.

So 200 steps over one 1.5 MB photo hold one 2 MB data URI between them, and only while one of
them is about to submit (not 200 of them from the start); a file above the upload threshold
is uploaded once and its ``oss://`` URL reused for an hour (the service keeps temporary files
48 h). The bytes are hashed again when the payload is built: a file changed during the run is
refused rather than sent under the key of its old content.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .. import images
from ..errors import ImageInputError
from ..images import ImageInfo
from ..redact import redact_url
from .inputs import URL_SAFETY_MARGIN_S, PreparedInput, StepImage, Uploader, prepare_input

#: How long an uploaded file's ``oss://`` URL is reused (the service keeps it 48 h).
OSS_REUSE_S = 3600.0


@dataclass(frozen=True)
class Pending:
    """A local file (or a step output's local copy) whose request value is not built yet."""

    path: Path
    label: str
    size: int


@dataclass
class _Live:
    prepared: PreparedInput
    until: float  # epoch seconds the value may be used (inf for data URIs)


class Payloads:
    """Request values for image inputs, shared per digest across a run's steps."""

    def __init__(
        self,
        *,
        backend: str,
        uploader: Uploader,
        upload_threshold: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.uploader = uploader
        self.upload_threshold = upload_threshold
        self.clock = clock
        self._files: dict[tuple[str, int, int], asyncio.Future[tuple[str, ImageInfo]]] = {}
        self._claims: dict[str, int] = {}
        self._live: dict[str, _Live] = {}
        self._building: dict[str, asyncio.Lock] = {}
        self.built = 0  # payloads built (data URIs encoded or files uploaded), for tests

    # -- when a step is ready ----------------------------------------------------------------

    async def identify(self, ref: object) -> PreparedInput:
        """What the key needs; a local input's value is left to :meth:`acquire` (its
        ``pending`` is set). Claims the input for the calling step until :meth:`release`."""
        now = self.clock()
        if isinstance(ref, StepImage):
            if (
                ref.url
                and ref.backend == self.backend
                and now < ref.url_valid_until - URL_SAFETY_MARGIN_S
            ):
                return PreparedInput(ref.url, redact_url(ref.url), ref.info, ref.sha256)
            return self._claim(
                PreparedInput(
                    "", f"steps.{ref.step}", ref.info, ref.sha256,
                    pending=Pending(ref.path, f"steps.{ref.step}", ref.size),
                )
            )  # fmt: skip
        if isinstance(ref, Path) or (
            isinstance(ref, str) and not images.is_remote(ref) and not images.is_data_uri(ref)
        ):
            path = Path(ref)
            sha, info = await self._identify_file(path)
            return self._claim(
                PreparedInput(
                    "", str(path), info, sha, pending=Pending(path, str(path), info.size_bytes)
                )
            )
        # URLs and data URIs are their own request values: nothing to build or share.
        return await prepare_input(
            ref, backend=self.backend, uploader=self.uploader,
            upload_threshold=self.upload_threshold, now=now,
        )  # fmt: skip

    async def _identify_file(self, path: Path) -> tuple[str, ImageInfo]:
        try:
            st = path.stat()
            key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key is None:
            return await asyncio.to_thread(_identify, path)  # its error names the problem
        found = self._files.get(key)
        if found is None:
            # One read for every step that asks at once (200 steps over one photo start
            # together): the first asks a thread, the others wait for its answer.
            found = self._files[key] = asyncio.ensure_future(asyncio.to_thread(_identify, path))
        try:
            return await asyncio.shield(found)
        except BaseException:
            if found.done() and self._files.get(key) is found:
                del self._files[key]  # a failed read is not remembered: ask again next time
            raise

    def reclaim(self, prepared: PreparedInput) -> PreparedInput:
        """Claim an input identified before (a retry after its step released it)."""
        return self._claim(prepared) if prepared.pending is not None else prepared

    def _claim(self, prepared: PreparedInput) -> PreparedInput:
        assert prepared.sha256 is not None
        self._claims[prepared.sha256] = self._claims.get(prepared.sha256, 0) + 1
        return prepared

    # -- when its slot is granted ------------------------------------------------------------

    async def acquire(self, prepared: PreparedInput) -> PreparedInput:
        """The input with its request value: built now, or the one another step built."""
        pending = prepared.pending
        if pending is None:
            return prepared
        sha = prepared.sha256
        assert sha is not None
        lock = self._building.setdefault(sha, asyncio.Lock())
        async with lock:
            live = self._live.get(sha)
            if live is not None and self.clock() < live.until:
                return replace(live.prepared, shown=_shown(pending.label, live.prepared))
            value, until = await self._build(pending, sha, prepared.info)
            full = PreparedInput(value, "", prepared.info, sha)
            self._live[sha] = _Live(full, until)
            self.built += 1
            return replace(full, shown=_shown(pending.label, full))

    async def _build(self, pending: Pending, sha: str, info: ImageInfo | None) -> tuple[str, float]:
        upload = pending.size > self.upload_threshold
        data, uri = await asyncio.to_thread(
            _read_checked, pending.path, sha, info, None if upload else self.upload_threshold
        )
        if uri is not None:
            return uri, float("inf")
        oss = await self.uploader.upload(data, pending.path.name)
        return oss, self.clock() + OSS_REUSE_S

    def release(self, prepared: PreparedInput | None) -> None:
        """The calling step no longer needs this input (it submitted, or it ended): the
        payload goes when no step that claimed it is left. Call once per :meth:`identify`."""
        if prepared is None or prepared.pending is None or prepared.sha256 is None:
            return
        sha = prepared.sha256
        left = self._claims.get(sha, 0) - 1
        if left > 0:
            self._claims[sha] = left
            return
        self._claims.pop(sha, None)
        live = self._live.get(sha)
        if live is not None and live.until == float("inf"):
            # A data URI is dropped; an upload's URL is only a string, kept for reuse.
            del self._live[sha]
        lock = self._building.get(sha)
        if lock is not None and not lock.locked():
            del self._building[sha]

    @property
    def live(self) -> int:
        """Data URIs held right now (for tests and the memory benchmark)."""
        return sum(1 for v in self._live.values() if v.until == float("inf"))


def _shown(label: str, prepared: PreparedInput) -> str:
    if prepared.is_oss:
        return f"{label} (uploaded as {prepared.value})"
    return f"{label} (data URI)"


def _identify(path: Path) -> tuple[str, ImageInfo]:
    """Read, check and hash a local image once; keep nothing of its bytes."""
    data, info = images.load_file(path)
    _check(info, str(path))  # an oversized file (no bytes read) stops here
    assert data is not None
    return hashlib.sha256(data).hexdigest(), info


def _read_checked(
    path: Path, sha: str, info: ImageInfo | None, inline_up_to: int | None
) -> tuple[bytes, str | None]:
    """The file's bytes (and, up to ``inline_up_to`` bytes, its data URI), refusing a file
    whose content changed since it was identified."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != sha:
        raise ImageInputError(
            f"{path}: the file changed during the run; run again to use its new content"
        )
    mime = info.mime if info is not None else "image/png"
    uri = (
        images.to_data_uri(data, mime)
        if inline_up_to is not None and len(data) <= inline_up_to
        else None
    )
    return data, uri


def _check(info: ImageInfo, label: str) -> None:
    problems = images.input_problems(info)
    if problems:
        raise ImageInputError(f"{label}: " + "; ".join(problems))
