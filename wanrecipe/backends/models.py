"""What the DashScope API answers, as typed values, and the parsing of its JSON bodies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from .. import wire
from ..errors import TransportError
from ..redact import redact_text, redact_url


@dataclass(frozen=True)
class SubmitResult:
    task_id: str
    request_id: str | None
    status: str


@dataclass(frozen=True)
class TaskResult:
    """One output of a task: a (signed, live) URL, or the error that replaced that image."""

    url: str | None = field(default=None, repr=False)  # the query string is a credential
    code: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.url is not None

    @property
    def redacted_url(self) -> str | None:
        return redact_url(self.url) if self.url else None


@dataclass(frozen=True)
class TaskState:
    """A task as one query saw it. Times are the server's (its clock, no zone): compare them
    only with each other."""

    task_id: str
    status: str
    request_id: str | None = None
    submit_time: datetime | None = None
    scheduled_time: datetime | None = None
    end_time: datetime | None = None
    results: tuple[TaskResult, ...] = ()
    task_metrics: Mapping[str, int] = field(default_factory=dict)
    image_count: int | None = None
    code: str | None = None
    message: str | None = None
    #: The body as received (private: read it through ``raw``, which redacts it).
    _body: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def raw(self) -> Mapping[str, Any]:
        """The body as received, with signed URLs and secrets redacted (on demand: a run
        queries thousands of times and looks at almost none of them)."""
        return cast(Mapping[str, Any], redact_body(self._body))

    @property
    def terminal(self) -> bool:
        return self.status in wire.TERMINAL_STATUSES

    @property
    def usage_images(self) -> int:
        """Images billed for this task (``usage.image_count``; 0 when absent)."""
        return self.image_count or 0

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(r.url for r in self.results if r.url)

    @property
    def queue_seconds(self) -> float | None:
        """PENDING time (scheduled - submitted), by the server's clock."""
        return _seconds(self.submit_time, self.scheduled_time)

    @property
    def run_seconds(self) -> float | None:
        """RUNNING time (end - scheduled), by the server's clock."""
        return _seconds(self.scheduled_time, self.end_time)

    @property
    def total_seconds(self) -> float | None:
        """Submit to end, by the server's clock."""
        return _seconds(self.submit_time, self.end_time)


@dataclass(frozen=True)
class TaskPage:
    """One page of ``GET /tasks`` (list)."""

    tasks: tuple[Mapping[str, Any], ...]
    total: int | None
    page_no: int | None
    page_size: int | None
    request_id: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    #: What the caller's ``then`` made of the file (``DashScopeClient.download``).
    placed: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class UploadPolicy:
    """The answer of ``GET /uploads?action=getPolicy``: a signed form for one upload host."""

    upload_host: str = field(repr=False)
    upload_dir: str
    oss_access_key_id: str = field(repr=False)
    signature: str = field(repr=False)
    policy: str = field(repr=False)
    x_oss_object_acl: str
    x_oss_forbid_overwrite: str
    expire_in_seconds: float | None = None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def redact_body(value: Any) -> Any:
    """A copy of a JSON value with every string scrubbed of signed URLs and keys."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_body(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_body(v) for v in value]
    return value


def malformed(what: str, detail: str, *, status: int = 200) -> TransportError:
    # A well-formed HTTP answer whose body we cannot use: the request did reach the server.
    return TransportError(
        "MalformedResponse", f"{what}: {detail}", status=status, reached_server=True
    )


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = body.get(key)
    return cast(Mapping[str, Any], value) if isinstance(value, Mapping) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_submit(body: Mapping[str, Any]) -> SubmitResult:
    output = _object(body, "output")
    task_id = _str(output.get("task_id")) if output else None
    if not output or not task_id:
        raise malformed("submit", "the answer has no output.task_id")
    status = _str(output.get("task_status")) or "PENDING"
    return SubmitResult(task_id, _str(body.get("request_id")), status)


def parse_task(body: Mapping[str, Any], task_id: str) -> TaskState:
    output = _object(body, "output")
    status = _str(output.get("task_status")) if output else None
    if not output or not status:
        raise malformed(f"task {task_id}", "the answer has no output.task_status")
    results = []
    for item in output.get("results") or ():
        if not isinstance(item, Mapping):
            raise malformed(f"task {task_id}", "a result is not an object")
        url = _str(item.get("url"))
        results.append(
            TaskResult(url, _str(item.get("code")), _str(item.get("message")))
            if url
            else TaskResult(None, _str(item.get("code")) or "Unknown", _str(item.get("message")))
        )
    metrics = _object(output, "task_metrics") or {}
    usage = _object(body, "usage") or {}
    return TaskState(
        task_id=_str(output.get("task_id")) or task_id,
        status=status,
        request_id=_str(body.get("request_id")),
        submit_time=wire.parse_time(output.get("submit_time")),
        scheduled_time=wire.parse_time(output.get("scheduled_time")),
        end_time=wire.parse_time(output.get("end_time")),
        results=tuple(results),
        task_metrics={str(k): v for k, v in metrics.items() if _int(v) is not None},
        image_count=_int(usage.get("image_count")),
        code=_str(output.get("code")),
        message=_str(output.get("message")),
        _body=body,
    )


def parse_task_page(body: Mapping[str, Any]) -> TaskPage:
    # SDK list() answers carry the page at the top level or under "output"/"data".
    page = _object(body, "output") or _object(body, "data") or body
    items = page.get("data") if isinstance(page.get("data"), list) else page.get("tasks")
    if items is None and isinstance(body.get("data"), list):
        items = body["data"]
    if not isinstance(items, list):
        items = []
    tasks = tuple(redact_body(t) for t in items if isinstance(t, Mapping))
    return TaskPage(
        tasks=tasks,
        total=_int(page.get("total")),
        page_no=_int(page.get("page_no")),
        page_size=_int(page.get("page_size")),
        request_id=_str(body.get("request_id")),
        raw=redact_body(body),
    )


def parse_upload_policy(body: Mapping[str, Any]) -> UploadPolicy:
    data = _object(body, "data") or _object(body, "output")
    if not data:
        raise malformed("upload policy", "the answer has no data object")
    fields = {}
    for name in (
        "upload_host",
        "upload_dir",
        "oss_access_key_id",
        "signature",
        "policy",
        "x_oss_object_acl",
        "x_oss_forbid_overwrite",
    ):
        value = data.get(name)
        if isinstance(value, bool):
            value = str(value).lower()
        if not isinstance(value, str | int):
            raise malformed("upload policy", f"the answer has no {name}")
        fields[name] = str(value)
    expire = data.get("expire_in_seconds")
    return UploadPolicy(
        **fields,
        expire_in_seconds=float(expire) if isinstance(expire, int | float) else None,
    )
