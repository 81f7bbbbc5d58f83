"""Results into the store and the run directory: a cached step's files, a finished task's
downloads (retried with backoff), what the journal keeps of them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import images, wire
from ..backends.models import TaskState
from ..errors import BackendError, StoreError
from ..offload import offload
from ..redact import redact_text, redact_url
from ..report.record import ErrorInfo, ResultFile, StepRecord
from ..store import DoneEntry, ResultRecord
from .inputs import StepImage
from .labels import read_labels
from .retry import read_retryable
from .stepbase import StepBase, StepFailed, file_name


class Downloads(StepBase):
    async def _from_cache(self, sid: str, rec: StepRecord, entry: DoneEntry) -> list[StepImage]:
        outputs = []
        # A link and a header read each: on the loop while the disk is quick and the blobs
        # are local, else in a thread.
        local = not self.state.blobs.remote
        for result in entry.results:
            dest = self.run_dir / file_name(sid, result.index)
            labels = await (self._local_call if local else offload)(
                functools.partial(_export_labelled, self.state.blobs, result.sha256, dest)
            )
            width, height = result.width or 0, result.height or 0
            rec.results.append(
                ResultFile(
                    result.index, dest.name, result.sha256, result.size, width, height,
                    result.url_redacted or "", labels.fidelity, labels.engine, labels.note,
                )
            )  # fmt: skip
            # No live URL: dependants get the local copy (data URI or upload).
            outputs.append(
                StepImage(
                    sid,
                    result.index,
                    dest,
                    result.sha256,
                    result.size,
                    width,
                    height,
                    None,
                    0.0,
                    self.backend,
                )
            )
        rec.state = "cached"
        rec.cached_from = entry.attempt.task_id
        return outputs

    async def _download(
        self, sid: str, rec: StepRecord, state: TaskState, attempt_id: int, timeout: float
    ) -> list[StepImage]:
        """Every image of a SUCCEEDED (billed) task into the store and the run directory.

        A transient failure never costs a paid image: downloads retry with backoff for up to
        the step's timeout (at least ``RunOptions.download_min_s``), and a 403 (an expired
        URL) queries the task again for a fresh one. What still cannot be had makes the step
        ``unavailable`` (paid, result unavailable) with its task id; the attempt stays
        ``submitted`` in the journal, so a re-run within 24 h re-attaches to the task and
        downloads again.
        """
        rec.state = "downloading"
        self._emit_step(rec)
        deadline = time.monotonic() + max(float(timeout), self.options.download_min_s)
        urls = _FreshUrls(self, state)
        jobs = []
        for index, result in enumerate(state.results):
            if result.url is None:
                rec.failed_outputs.append(
                    ErrorInfo(result.code or "Unknown", result.message or "", task_id=state.task_id)
                )
                continue
            jobs.append((index, result.url))
        # Each download's blocking part (its fsync, the blob's rename, the link into the run
        # directory) is made on the loop while the disk is quick and the blobs are local, and
        # the done mark after it. Else it goes to a thread, and a task of one image (the
        # common case) is marked done in that same thread call, right after its blob is
        # stored: one hand-off for the whole result.
        on_loop = self._loop_writes.allowed and not self.state.blobs.remote
        mark = None
        if not on_loop and len(jobs) == 1 and len(state.results) == 1:

            def mark(placed: tuple[Path, str, int, Any, Any], url: str) -> StoreError | None:
                record = _result_record(0, placed, url)
                try:
                    self._journal.record_done(attempt_id, [record], state.usage_images)
                except StoreError as exc:
                    return exc
                return None

        got = await asyncio.gather(
            *(
                self._fetch(sid, index, url, state.task_id, urls, deadline, mark, on_loop)
                for index, url in jobs
            ),
            return_exceptions=True,
        )
        for g in got:
            if isinstance(g, BaseException) and not isinstance(g, BackendError):
                raise g  # a bug or a store error: not a download failure
        missing = [
            (index, g)
            for (index, _), g in zip(jobs, got, strict=True)
            if isinstance(g, BackendError)
        ]
        outputs: list[StepImage] = []
        records: list[ResultRecord] = []
        not_marked: StoreError | None = None
        for g in got:
            if isinstance(g, BaseException):
                continue
            index, url, placed, not_marked = g
            dest, sha, size, info, labels = placed
            shown = redact_url(url)
            rec.results.append(
                ResultFile(
                    index, dest.name, sha, size, info.width, info.height, shown,
                    labels.fidelity, labels.engine, labels.note,
                )
            )  # fmt: skip
            records.append(_result_record(index, placed, url))
            outputs.append(
                StepImage(
                    sid, index, dest, sha, size, info.width, info.height, url,
                    url_valid_until(url), self.backend,
                )
            )  # fmt: skip
        rec.results.sort(key=lambda r: r.index)
        if missing:
            # Not record_done: a done row must hold every image. The downloaded ones are in
            # the store; the attempt stays submitted so a re-run re-attaches and fetches again.
            indexes = ", ".join(str(i) for i, _ in missing)
            first = missing[0][1]
            raise ResultUnavailable(
                ErrorInfo(
                    "ResultUnavailable",
                    f"paid, result unavailable: task {state.task_id} succeeded and was billed "
                    f"({state.usage_images} image(s)), but result {indexes} could not be "
                    f"downloaded ({first.code}: {redact_text(first.message)}). Run again "
                    "within 24 h: the re-run re-attaches to the task and downloads it",
                    status=first.status,
                    task_id=state.task_id,
                )
            )
        if not_marked is not None:  # the done mark made in the download's call failed
            raise StepFailed(ErrorInfo("StateError", str(not_marked)))
        if mark is None and records:
            await self._journal_call(
                self._journal.record_done,
                attempt_id,
                records,
                state.usage_images,
                quick_first=True,
            )
        if not outputs:
            raise StepFailed(ErrorInfo("NoResults", "the task succeeded without any image"))
        return outputs

    async def _fetch(
        self,
        sid: str,
        index: int,
        url: str,
        task_id: str,
        urls: _FreshUrls,
        deadline: float,
        mark: Callable[[Any, str], StoreError | None] | None = None,
        on_loop: bool = False,
    ) -> tuple[int, str, Any, StoreError | None]:
        """Download one result (fsynced, into the state dir); returns (index, url used, what
        was downloaded, and what ``mark`` said: it runs in the same thread call, after the
        blob is stored). Raises the last BackendError when the image cannot be had within
        ``deadline``. ``on_loop``: the blocking part through ``_local_call``."""
        policy = self.options.retry
        dest = self._incoming / f"{task_id}-{index}.png"
        failures = refreshed = 0
        blobs, final = self.state.blobs, self.run_dir / file_name(sid, index)
        while True:
            try:
                # In the call that fsyncs the download: its header (not the whole file),
                # then the file becomes its blob under the digest computed while it streamed
                # in (no re-read, no re-hash), linked into the run directory.
                got = await self.client.download(
                    url,
                    dest,
                    max_bytes=self.options.max_download_bytes,
                    then=functools.partial(_place_and_mark, blobs, dest=final, mark=mark, url=url),
                    call=self._local_call if on_loop else None,
                )
                break
            except BackendError as exc:
                failures += 1
                delay = policy.delay(failures)
                if time.monotonic() + delay >= deadline:
                    raise
                if exc.status == 403:
                    # An expired (or expiring) signed URL: ask the task for a fresh one. One
                    # that has expired by its own signature cannot work: give up at once;
                    # so does a URL refused again and again.
                    if refreshed >= MAX_URL_REFRESHES:
                        raise
                    refreshed += 1
                    fresh = await urls.get(index, deadline)
                    if fresh is None or url_valid_until(fresh) <= time.time():
                        raise
                    if refreshed == 1:
                        self._warn(
                            f"{sid}: result {index} URL refused ({exc.code}); queried task "
                            f"{task_id} for a fresh URL"
                        )
                    url = fresh
                elif (
                    exc.status == 403
                    or not read_retryable(exc)
                    or time.monotonic() + delay >= deadline
                ):
                    raise
                await asyncio.sleep(delay)
        placed, marked = got.placed
        return index, url, placed, marked


#: Fresh-URL queries per image after a 403, before it counts as unavailable.
MAX_URL_REFRESHES = 5


class ResultUnavailable(StepFailed):
    """The task succeeded and was billed, but its image could not be downloaded."""


class _FreshUrls:
    """Re-queries a task for fresh result URLs, once for all results that need one at a time."""

    def __init__(self, owner: StepBase, state: TaskState) -> None:
        self._owner = owner
        self._task_id = state.task_id
        self._lock = asyncio.Lock()
        self._urls = [r.url for r in state.results]
        self._version = 0

    async def get(self, index: int, deadline: float) -> str | None:
        seen = self._version
        async with self._lock:
            if self._version == seen:  # nobody refreshed while we waited for the lock
                await self._refresh(deadline)
            return self._urls[index] if index < len(self._urls) else None

    async def _refresh(self, deadline: float) -> None:
        owner = self._owner
        policy = owner.options.retry
        failures = 0
        while True:
            try:
                async with owner.gate.query():
                    state = await owner.client.query(self._task_id)
                break
            except BackendError as exc:
                failures += 1
                delay = policy.delay(failures)
                if not read_retryable(exc) or time.monotonic() + delay >= deadline:
                    return
                await asyncio.sleep(delay)
        if state.status == "SUCCEEDED" and state.results:
            self._urls = [r.url for r in state.results]
        self._version += 1


def _place_and_mark(
    blobs: Any,
    got: Any,
    dest: Path,
    mark: Callable[[Any, str], StoreError | None] | None,
    url: str,
) -> tuple[tuple[Path, str, int, Any, Any], StoreError | None]:
    placed = _place(blobs, got, dest)
    return placed, (mark(placed, url) if mark is not None else None)


def _result_record(index: int, placed: tuple[Path, str, int, Any, Any], url: str) -> ResultRecord:
    """What the journal keeps of a stored result (its URL without the signature)."""
    _, sha, size, info, _ = placed
    return ResultRecord(index, sha, size, info.width, info.height, redact_url(url))


def _place(blobs: Any, got: Any, dest: Path) -> tuple[Path, str, int, Any, Any]:
    """A download into the store and to its place in the run directory: (dest, sha256, size,
    header info, labels)."""
    info = images.inspect_header(got.path)
    blob = blobs.adopt(got.path, got.sha256, got.size)
    blobs.export(blob.sha256, dest)
    return dest, blob.sha256, blob.size, info, read_labels(dest)


def _export_labelled(blobs: Any, sha256: str, dest: Path) -> Any:
    """A stored result linked into the run directory; its labels."""
    blobs.export(sha256, dest)
    return read_labels(dest)


def url_valid_until(url: str) -> float:
    """When a result URL stops working: its signed ``Expires`` (epoch seconds, OSS style)
    when it has one, else the documented 24 h. Dependants send the stored copy instead of a
    URL that would expire before the service fetches it."""
    from urllib.parse import parse_qs, urlsplit

    now = time.time()
    default = now + wire.URL_TTL_SECONDS
    with contextlib.suppress(ValueError, LookupError):
        expires = float(parse_qs(urlsplit(url).query)["Expires"][0])
        return min(expires, default)
    return default
