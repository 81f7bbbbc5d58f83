"""Results into the store and the run directory: a cached step's files, a finished task's
downloads (retried with backoff), what the journal keeps of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from .. import images, wire
from ..backends.models import TaskState
from ..errors import BackendError
from ..redact import redact_text, redact_url
from ..report.record import ErrorInfo, ResultFile, StepRecord
from ..store import DoneEntry, ResultRecord
from .inputs import StepImage
from .retry import read_retryable
from .stepbase import StepBase, StepFailed, file_name


class Downloads(StepBase):
    async def _from_cache(self, sid: str, rec: StepRecord, entry: DoneEntry) -> list[StepImage]:
        outputs = []
        for result in entry.results:
            dest = self.run_dir / file_name(sid, result.index)
            await asyncio.to_thread(self.state.blobs.export, result.sha256, dest)
            width, height = result.width or 0, result.height or 0
            rec.results.append(
                ResultFile(
                    result.index,
                    dest.name,
                    result.sha256,
                    result.size,
                    width,
                    height,
                    result.url_redacted or "",
                )
            )
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
        self, sid: str, rec: StepRecord, state: TaskState, attempt_id: int
    ) -> list[StepImage]:
        rec.state = "downloading"
        self._emit_step(rec)
        jobs = []
        for index, result in enumerate(state.results):
            if result.url is None:
                rec.failed_outputs.append(
                    ErrorInfo(result.code or "Unknown", result.message or "", task_id=state.task_id)
                )
                continue
            jobs.append((index, result.url))
        got = await asyncio.gather(
            *(self._fetch(url, state.task_id, index) for index, url in jobs),
            return_exceptions=True,
        )
        failures = [g for g in got if isinstance(g, BaseException)]
        stored: list[tuple[int, str, Any]] = [
            (index, url, g)
            for (index, url), g in zip(jobs, got, strict=True)
            if not isinstance(g, BaseException)
        ]
        outputs: list[StepImage] = []
        records: list[ResultRecord] = []
        for index, url, (sha, size, info) in stored:
            dest = self.run_dir / file_name(sid, index)
            await asyncio.to_thread(self.state.blobs.export, sha, dest)
            shown = redact_url(url)
            rec.results.append(
                ResultFile(index, dest.name, sha, size, info.width, info.height, shown)
            )
            records.append(ResultRecord(index, sha, size, info.width, info.height, shown))
            outputs.append(
                StepImage(
                    sid,
                    index,
                    dest,
                    sha,
                    size,
                    info.width,
                    info.height,
                    url,
                    url_valid_until(url),
                    self.backend,
                )
            )
        if records:
            await self._journal_call(
                self._journal.record_done, attempt_id, records, state.usage_images
            )
        if failures:
            # What was downloaded is stored and journaled; the task stays re-attachable.
            raise failures[0]
        if not outputs:
            raise StepFailed(ErrorInfo("NoResults", "the task succeeded without any image"))
        return outputs

    async def _fetch(self, url: str, task_id: str, index: int) -> tuple[str, int, Any]:
        """Download one result into the store; returns (sha256, size, image info)."""
        policy = self.options.retry
        dest = self._incoming / f"{task_id}-{index}.png"
        for number in range(1, policy.attempts + 1):
            try:
                got = await self.client.download(
                    url, dest, max_bytes=self.options.max_download_bytes
                )
                break
            except BackendError as exc:
                if not read_retryable(exc) or number == policy.attempts:
                    raise StepFailed(
                        ErrorInfo(
                            exc.code,
                            f"result download failed: {redact_text(exc.message)}",
                            status=exc.status,
                        )
                    ) from exc
                await asyncio.sleep(policy.delay(number))
        info = await asyncio.to_thread(images.inspect_file, got.path)
        blob = await asyncio.to_thread(self.state.blobs.put_file, got.path, move=True)
        return blob.sha256, blob.size, info


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
