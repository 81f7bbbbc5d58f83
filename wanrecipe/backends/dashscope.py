"""Async client of DashScope's image-edit API (``wanx2.1-imageedit``), over one aiohttp session.

Speaks exactly what the official SDK sends (spec §8.3, §8.5), to the real service or to any
server at ``base_url`` (the emulator is just another base URL). Every failure leaves this module
as a :class:`~wanrecipe.errors.BackendError` (the service said no) or a
:class:`~wanrecipe.errors.TransportError` (no usable answer), never as an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import json
import mimetypes
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import aiohttp
import yarl

from .. import __version__, wire
from ..errors import BackendError, TransportError
from ..offload import offload
from ..redact import redact_text, redact_url
from .hosts import result_url_problem
from .models import (
    Downloaded,
    SubmitResult,
    TaskPage,
    TaskState,
    UploadPolicy,
    malformed,
    parse_submit,
    parse_task,
    parse_task_page,
    parse_upload_policy,
)
from .transport import RequestProbe, is_transport_failure, map_error, trace_config

#: Request bodies above this are streamed from memory rather than written in one go.
_STREAM_BODY_OVER = 512 * 1024
DEFAULT_USER_AGENT = f"wanrecipe/{__version__}"
_CHUNK = 64 * 1024
_LIST_TIME_FORMAT = "%Y%m%d%H%M%S"


class DashScopeClient:
    """``async with DashScopeClient(base_url, api_key) as client: ...``

    ``timeout`` bounds one API request (connect, send, answer); downloads and uploads bound the
    wait between two chunks by it instead, so a large file is not cut off.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        user_agent: str = DEFAULT_USER_AGENT,
        workspace: str | None = None,
        download_timeout: float = 300.0,
        result_hosts: Sequence[str] = (),
    ) -> None:
        if not api_key:
            raise ValueError("an API key is required")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._user_agent = user_agent
        self._workspace = workspace
        #: A whole download, however slowly it trickles in (the chunk wait alone never ends a
        #: download that sends a byte now and then).
        self._download_timeout = download_timeout
        self._result_hosts = tuple(result_hosts)
        self._session: aiohttp.ClientSession | None = None
        self._policy: tuple[UploadPolicy, float] | None = None

    def __repr__(self) -> str:
        return f"DashScopeClient({redact_url(self.base_url)!r})"

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            # No sock_read here: it could never fire before ``total`` (the same bound, started
            # later), and it re-arms a timer on every chunk of every answer.
            timeout=aiohttp.ClientTimeout(total=self._timeout, connect=self._connect_timeout),
            trace_configs=[trace_config()],
            headers={"User-Agent": self._user_agent},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use the client inside 'async with DashScopeClient(...)'")
        return self._session

    # -- API calls ------------------------------------------------------------------------

    async def submit(
        self,
        function: str,
        prompt: str,
        image: str,
        mask: str | None = None,
        parameters: Mapping[str, object] | None = None,
        *,
        oss_resolve: bool = False,
    ) -> SubmitResult:
        """Create one task. Raises BackendError/TransportError; see ``reached_server``."""
        inputs: dict[str, str] = {"function": function, "prompt": prompt, "base_image_url": image}
        if mask is not None:
            inputs["mask_image_url"] = mask
        body = {"model": wire.MODEL, "parameters": dict(parameters or {}), "input": inputs}
        headers = self._api_headers()
        headers[wire.HEADER_ASYNC] = "enable"
        headers["Content-Type"] = "application/json"
        if oss_resolve or any(v.startswith("oss://") for v in (image, mask) if v):
            headers[wire.HEADER_OSS_RESOLVE] = "enable"
        data = json.dumps(body, ensure_ascii=False).encode()
        answer = await self._api("POST", wire.SUBMIT_PATH, "submit", headers=headers, data=data)
        return parse_submit(answer)

    async def query(self, task_id: str) -> TaskState:
        path = wire.TASK_PATH.format(task_id=task_id)
        answer = await self._api("GET", path, f"query {task_id}", task_id=task_id)
        return parse_task(answer, task_id)

    async def cancel(self, task_id: str) -> str | None:
        """Cancel a PENDING task; returns the request id."""
        path = wire.CANCEL_PATH.format(task_id=task_id)
        answer = await self._api("POST", path, f"cancel {task_id}", task_id=task_id)
        request_id = answer.get("request_id")
        return request_id if isinstance(request_id, str) else None

    async def list_tasks(
        self,
        *,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        status: str | None = None,
        model_name: str | None = None,
        page_no: int = 1,
        page_size: int = 10,
    ) -> TaskPage:
        """One page of the account's tasks; times as ``datetime`` or ``YYYYMMDDhhmmss``."""
        params: dict[str, str] = {"page_no": str(page_no), "page_size": str(page_size)}
        for name, value in (("start_time", start_time), ("end_time", end_time)):
            if value is not None:
                params[name] = (
                    value.strftime(_LIST_TIME_FORMAT) if isinstance(value, datetime) else value
                )
        if status:
            params["status"] = status
        if model_name:
            params["model_name"] = model_name
        answer = await self._api("GET", wire.LIST_PATH, "list tasks", params=params)
        return parse_task_page(answer)

    async def upload(self, source: Path | bytes, filename: str | None = None) -> str:
        """Upload a local file through the policy flow; returns its ``oss://`` URL."""
        if isinstance(source, Path):
            data = await asyncio.to_thread(source.read_bytes)
            filename = filename or source.name
        else:
            data = source
        if not filename or "/" in filename or "\\" in filename:
            raise ValueError("upload needs a plain file name (no directories)")
        policy = await self._upload_policy()
        key = f"{policy.upload_dir}/{filename}"
        form = aiohttp.FormData(quote_fields=False)
        # Field order as the SDK sends it (spec §8.5); OSS wants "file" last.
        form.add_field("OSSAccessKeyId", policy.oss_access_key_id)
        form.add_field("Signature", policy.signature)
        form.add_field("policy", policy.policy)
        form.add_field("key", key)
        form.add_field("x-oss-object-acl", policy.x_oss_object_acl)
        form.add_field("x-oss-forbid-overwrite", policy.x_oss_forbid_overwrite)
        form.add_field("success_action_status", "200")
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        form.add_field("x-oss-content-type", mime)
        form.add_field("file", data, filename=filename, content_type=mime)
        what = f"upload {filename} to {redact_url(policy.upload_host)}"
        # No Authorization header: the signed policy is the credential, and the upload host is
        # not the API host.
        await self._send(
            "POST",
            policy.upload_host,
            what,
            data=form,
            headers={"Accept": "application/json"},
            expect_json=False,
        )
        return f"oss://{key}"

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        then: Callable[[Downloaded], Any] | None = None,
        call: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None,
    ) -> Downloaded:
        """Stream ``url`` into ``dest`` (atomically: temp file, fsync, rename), size-capped.

        ``then``: called with the placed file in the same worker-thread call that fsyncs and
        renames it (one thread hand-off for both); what it returns is ``Downloaded.placed``.
        ``call``: how that blocking call is made (default: ``offload``, a worker thread); the
        runner makes it on the event loop while the disk is quick.

        Sends no credentials: result URLs carry their own signature. Only URLs on the
        backend's own hosts are fetched (``hosts.result_url_problem``), redirects are not
        followed, and the whole download is bounded by ``download_timeout``.
        """
        what = f"download {redact_url(url)}"
        refused = result_url_problem(self.base_url, url, self._result_hosts)
        if refused is not None:
            raise BackendError("ForeignResultURL", f"{what}: refused: {refused}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        probe = RequestProbe()
        timeout = aiohttp.ClientTimeout(
            total=self._download_timeout, connect=self._connect_timeout, sock_read=self._timeout
        )
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = hashlib.sha256()
                size = 0
                try:
                    # encoded=True: re-quoting the query would break its signature.
                    async with self.session.get(
                        yarl.URL(url, encoded=True),
                        timeout=timeout,
                        trace_request_ctx=probe,
                        allow_redirects=False,
                    ) as resp:
                        if resp.status != 200:
                            raise await _error_from_response(resp, what)
                        declared = resp.content_length
                        if declared is not None and declared > max_bytes:
                            raise _too_large(what, declared, max_bytes)
                        async for chunk in resp.content.iter_chunked(_CHUNK):
                            size += len(chunk)
                            if size > max_bytes:
                                raise _too_large(what, size, max_bytes)
                            digest.update(chunk)
                            out.write(chunk)
                except BackendError:
                    raise
                except Exception as exc:
                    if not is_transport_failure(exc):
                        raise
                    raise map_error(exc, what, sent=probe.sent) from exc
                out.flush()
                got = Downloaded(dest, digest.hexdigest(), size)
                # One call: the bytes to disk, then the name, then the name to disk.
                place = functools.partial(_sync_and_place, out.fileno(), tmp, got, then)
                placed = await (call or offload)(place)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return replace(got, placed=placed)

    # -- plumbing -------------------------------------------------------------------------

    def _api_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if self._workspace:
            headers[wire.HEADER_WORKSPACE] = self._workspace
        return headers

    async def _upload_policy(self) -> UploadPolicy:
        now = time.monotonic()
        if self._policy is not None:
            policy, fetched = self._policy
            # Reuse, as the SDK does within one call, while comfortably inside its lifetime.
            if policy.expire_in_seconds and now - fetched < policy.expire_in_seconds / 2:
                return policy
        answer = await self._api(
            "GET",
            wire.UPLOAD_POLICY_PATH,
            "upload policy",
            params={"action": "getPolicy", "model": wire.MODEL},
        )
        policy = parse_upload_policy(answer)
        self._policy = (policy, now)
        return policy

    async def _api(
        self,
        method: str,
        path: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        task_id: str | None = None,
    ) -> Mapping[str, Any]:
        try:
            answer = await self._send(
                method,
                self.base_url + path,
                what,
                headers=headers or self._api_headers(),
                data=data,
                params=params,
            )
        except BackendError as exc:
            if task_id and exc.task_id is None:
                exc.task_id = task_id
            raise
        assert answer is not None
        return answer

    async def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: Mapping[str, str],
        data: bytes | aiohttp.FormData | None = None,
        params: Mapping[str, str] | None = None,
        expect_json: bool = True,
    ) -> Mapping[str, Any] | None:
        """One request; the only place API-call failures are translated."""
        probe = RequestProbe()
        if isinstance(data, bytes) and len(data) > _STREAM_BODY_OVER:
            # aiohttp sends a large bytes body in one write that may hold the loop (and warns);
            # a fresh BytesIO per attempt streams it in chunks, with the same Content-Length.
            data = io.BytesIO(data)  # type: ignore[assignment]
        try:
            async with self.session.request(
                method, url, headers=headers, data=data, params=params, trace_request_ctx=probe
            ) as resp:
                if resp.status != 200:
                    raise await _error_from_response(resp, what)
                if not expect_json:
                    await resp.read()
                    return None
                text = await resp.text(encoding="utf-8", errors="replace")
        except BackendError:
            raise
        except Exception as exc:
            if not is_transport_failure(exc):
                raise
            raise map_error(exc, what, sent=probe.sent) from exc
        try:
            body = json.loads(text)
        except ValueError:
            raise malformed(what, "the answer is not JSON") from None
        if not isinstance(body, dict):
            raise malformed(what, "the answer is not a JSON object")
        return cast(dict[str, Any], body)


async def _error_from_response(resp: aiohttp.ClientResponse, what: str) -> BackendError:
    """An HTTP error answer: BackendError when the service explains it in JSON, else a
    TransportError (a proxy or gateway page: whether the API saw the request is unknown)."""
    status = resp.status
    raw = await resp.read()
    text = raw[:4096].decode("utf-8", errors="replace")
    body: object = None
    if "json" in (resp.content_type or ""):
        with contextlib.suppress(ValueError):
            body = json.loads(text)
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        message = redact_text(str(body.get("message") or ""))
        request_id = body.get("request_id")
        return BackendError(
            body["code"],
            f"{what}: {message}" if message else what,
            status=status,
            request_id=request_id if isinstance(request_id, str) else None,
        )
    snippet = redact_text(" ".join(text.split())[:200])
    code = _xml_code(text) or f"HTTP{status}"
    return TransportError(
        code,
        f"{what}: HTTP {status} {resp.reason or ''}: {snippet}".rstrip(": "),
        status=status,
        reached_server=None,
    )


def _xml_code(text: str) -> str | None:
    # Object stores (OSS, S3) explain errors in XML: <Error><Code>AccessDenied</Code>...
    start = text.find("<Code>")
    end = text.find("</Code>", start)
    if start < 0 or end < 0:
        return None
    code = text[start + len("<Code>") : end].strip()
    return code if code.isascii() and 0 < len(code) <= 64 else None


def _too_large(what: str, size: int, limit: int) -> BackendError:
    return BackendError(
        "DownloadTooLarge", f"{what}: {size} bytes is over the limit of {limit} bytes"
    )


def _sync_and_place(
    fd: int, tmp: Path, got: Downloaded, then: Callable[[Downloaded], Any] | None
) -> Any:
    os.fsync(fd)
    tmp.replace(got.path)
    if then is None:
        _fsync_dir(got.path.parent)
        return None
    # The caller moves the file on (into the blob store, whose rename it makes durable): this
    # name need not survive a power loss, the bytes (fsynced above) go with the file.
    return then(got)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
