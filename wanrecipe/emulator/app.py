"""The aiohttp application: routes, auth, quota, faults, in the shapes of spec §3, §4, §6, §8."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, NoReturn

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .. import wire
from ..errors import BackendError
from .accounts import Account, Accounts
from .config import EmulatorConfig
from .faults import FaultInjector, parse_faults
from .inputs import Fetcher
from .pool import make_executor
from .stats import Stats
from .storage import (
    RESULTS_PREFIX,
    UPLOAD_PATH,
    BlobStore,
    Signer,
    check_upload,
    issue_policy,
    upload_key,
)
from .tasks import TaskManager
from .validation import SubmitRequest, api_error, check_inputs, invalid, parse_submit

log = logging.getLogger(__name__)

API = "/api/v1"
STATS_PATH = "/emulator/stats"
#: Two 10 MB images as base64 data URIs, plus the JSON around them.
MAX_BODY_BYTES = 32 * 1024 * 1024
_HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "BadRequest.TooLarge"}


class _Dropped(Exception):
    """The handler closed the connection on purpose (fault injection)."""

    def __init__(self, created: bool) -> None:
        super().__init__()
        self.created = created  # a task was created before the drop (``submit.lost``)


class Emulator:
    """Everything one running emulator owns; stored on the app under :data:`EMULATOR`."""

    def __init__(self, config: EmulatorConfig, executor: Executor | None = None) -> None:
        self.config = config
        self.stats = Stats()
        self.faults = FaultInjector(parse_faults(config.faults), config.fault_seed)
        self.store = BlobStore(config.data_dir)
        self.signer = Signer()
        #: Quota, tasks and counters per API key (the totals stay in ``stats``).
        self.accounts = Accounts(config, self.stats.started)
        self._executor = executor
        self._owns_executor = executor is None
        self._session: aiohttp.ClientSession | None = None
        self.manager = TaskManager(
            config,
            stats=self.stats,
            faults=self.faults,
            store=self.store,
            signer=self.signer,
            executor=self.executor,
            fetcher=self.fetcher,
        )

    def executor(self) -> Executor:
        """The engine executor, created on first use (a process pool unless configured)."""
        if self._executor is None:
            self._executor = make_executor(self.config.executor, self.config.workers)
        return self._executor

    def fetcher(self) -> Fetcher:
        if self._session is None:
            # trust_env=False: a proxy setting must never route our loopback fetches elsewhere.
            self._session = aiohttp.ClientSession(
                trust_env=False, connector=aiohttp.TCPConnector(limit=16)
            )
        return Fetcher(self._session, self.store, self.signer)

    def snapshot(self) -> dict[str, Any]:
        """The totals, and the same counters per account (keyed by a hash of the key)."""
        body = self.stats.snapshot(self.faults.injected, self.manager.live_counts())
        body["accounts"] = {
            account.id: account.stats.snapshot(None, self.manager.live_counts(account))
            for account in self.accounts
        }
        return body

    def counters(self, account: Account | None) -> tuple[Stats, ...]:
        """Where a request's counts go: the totals, and its account's once it is known."""
        return (self.stats,) if account is None else (self.stats, account.stats)

    async def close(self) -> None:
        await self.manager.close()
        if self._session is not None:
            await self._session.close()
        if self._owns_executor and self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)


EMULATOR = web.AppKey("emulator", Emulator)


def create_app(
    config: EmulatorConfig | None = None, *, executor: Executor | None = None
) -> web.Application:
    """Build the emulator app. ``executor``: a shared engine executor that the caller owns
    (tests share one process pool); by default the app makes and closes its own."""
    config = config or EmulatorConfig()
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    app[EMULATOR] = Emulator(config, executor)
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post(API + wire.SUBMIT_PATH, submit)
    app.router.add_get(API + "/tasks/{task_id}", query)
    app.router.add_get(API + "/tasks/{task_id}/", query)
    app.router.add_post(API + "/tasks/{task_id}/cancel", cancel)
    app.router.add_get(API + wire.LIST_PATH, list_tasks)
    app.router.add_get(API + wire.UPLOAD_POLICY_PATH, upload_policy)
    app.router.add_post(UPLOAD_PATH, upload)
    app.router.add_get(RESULTS_PREFIX + "{task_id}/{name}", download)
    app.router.add_get(STATS_PATH, stats)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    emu = app[EMULATOR]
    sweeper = asyncio.create_task(_sweep(emu))
    yield
    sweeper.cancel()
    await asyncio.gather(sweeper, return_exceptions=True)
    await emu.close()


async def _sweep(emu: Emulator) -> None:
    period = max(0.5, min(emu.config.task_ttl / 2, 60.0))
    while True:
        await asyncio.sleep(period)
        emu.manager.sweep()


# -- responses --------------------------------------------------------------------------------


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


def _request_id() -> str:
    return str(uuid.uuid4())


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"request_id": _request_id(), "code": code, "message": message}, status)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except BackendError as exc:
        return _error(exc.status or 400, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, _HTTP_CODES.get(exc.status, exc.reason), exc.reason)
    except _Dropped:
        # The transport is gone; aiohttp discards whatever we return.
        return web.Response(status=500)


def _drop(request: web.Request, *, created: bool = False) -> NoReturn:
    if request.transport is not None:
        request.transport.abort()
    raise _Dropped(created)


def _authorize(request: web.Request, emu: Emulator) -> Account:
    """The caller's account (created on first use), or 401 without a valid key."""
    return emu.accounts.of(_api_key(request, emu))


def _api_key(request: web.Request, emu: Emulator) -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise BackendError("InvalidApiKey", "No API-key provided.", status=401)
    expected = emu.config.api_key
    if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
        raise api_error("InvalidApiKey")
    return key


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _own_port(request: web.Request) -> int:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if sockname else 0


# -- submit -----------------------------------------------------------------------------------


async def submit(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    now = time.monotonic()
    emu.stats.submit_attempts.add(now)
    account: Account | None = None
    try:
        account = _authorize(request, emu)
        account.stats.submit_attempts.add(now)
        return await _submit(request, emu, account)
    except BackendError as exc:
        for stats in emu.counters(account):
            stats.submits_refused[exc.code] += 1
        raise
    except _Dropped as exc:
        if not exc.created:
            for stats in emu.counters(account):
                stats.submits_refused["(connection dropped)"] += 1
        raise


async def _submit(request: web.Request, emu: Emulator, account: Account) -> web.StreamResponse:
    if request.headers.get(wire.HEADER_ASYNC, "").lower() != "enable":
        raise BackendError(
            "AccessDenied", "current user api does not support synchronous calls", status=403
        )
    fault = emu.faults.pick("submit")
    if fault == "submit.429":
        raise api_error("Throttling.RateQuota")
    if fault == "submit.500":
        raise api_error("InternalError")
    if fault == "submit.drop":
        _drop(request)
    if not account.submit_bucket.try_take():
        for stats in emu.counters(account):
            stats.throttles["submit_rate"] += 1
        raise api_error("Throttling.RateQuota")
    if request.content_type != "application/json":
        raise invalid("Content-Type must be application/json.")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise api_error("BadRequest.TooLarge")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise api_error("BadRequest.TooLarge") from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("The request body is not valid JSON.") from None
    oss = request.headers.get(wire.HEADER_OSS_RESOLVE, "").lower() == "enable"
    req = parse_submit(body, oss_resolve=oss)
    emu.manager.admit(account)
    own_port = _own_port(request)
    inputs = None
    if emu.config.validate_images == "submit":
        inputs = await _prefetch(emu, req, own_port)
        emu.manager.admit(account)  # the fetch yielded: check the slots again
    task = emu.manager.create(req, own_port=own_port, account=account, inputs=inputs)
    accepted = time.monotonic()
    for stats in emu.counters(account):
        stats.submits_accepted += 1
        stats.submit_accepts.add(accepted)
    if fault == "submit.lost":
        _drop(request, created=True)
    # The service always answers PENDING here, even when a slot is free at once.
    output = {"task_status": "PENDING", "task_id": task.task_id}
    return _json({"request_id": _request_id(), "output": output})


async def _prefetch(emu: Emulator, req: SubmitRequest, own_port: int) -> tuple[bytes, bytes | None]:
    fetcher = emu.fetcher()
    now = emu.config.clock()
    base = await fetcher.fetch(req.base, own_port=own_port, now=now)
    mask = None if req.mask is None else await fetcher.fetch(req.mask, own_port=own_port, now=now)
    check_inputs(req, base, mask, emu.config.max_output_pixels)
    return base, mask


# -- tasks ------------------------------------------------------------------------------------


async def query(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    account = _authorize(request, emu)
    if not account.query_bucket.try_take():
        for stats in emu.counters(account):
            stats.throttles["query_rate"] += 1
        raise api_error("Throttling.RateQuota")
    fault = emu.faults.pick("query")
    if fault == "query.500":
        raise api_error("InternalError")
    if fault == "query.503":
        raise BackendError(
            "ServiceUnavailable", "Service is unavailable, please try again later.", status=503
        )
    if fault == "query.504":
        raise BackendError("GatewayTimeout", "Gateway timeout, please try again later.", status=504)
    for stats in emu.counters(account):
        stats.queries += 1
    task_id = request.match_info["task_id"]
    task = emu.manager.get(task_id, account)
    if task is None:
        return _json(
            {"request_id": _request_id(), "output": {"task_id": task_id, "task_status": "UNKNOWN"}}
        )
    output, usage = emu.manager.output(task, _origin(request))
    body: dict[str, Any] = {"request_id": _request_id(), "output": output}
    if usage is not None:
        body["usage"] = usage
    return _json(body)


async def cancel(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    account = _authorize(request, emu)
    for stats in emu.counters(account):
        stats.cancels += 1
    if not emu.manager.cancel(request.match_info["task_id"], account):
        raise BackendError(
            "UnsupportedOperation",
            "Failed to cancel the task, please confirm if the task is in PENDING status.",
            status=400,
        )
    return _json({"request_id": _request_id()})


def _list_time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        raise invalid(f"{name} must be YYYYMMDDhhmmss.") from None


def _int_arg(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise invalid(f"{name} must be an integer.") from None
    if not lo <= value <= hi:
        raise invalid(f"{name} must be between {lo} and {hi}.")
    return value


async def list_tasks(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    account = _authorize(request, emu)
    for stats in emu.counters(account):
        stats.lists += 1
    q = request.query
    page_no = _int_arg(request, "page_no", 1, 1, 1_000_000)
    page_size = _int_arg(request, "page_size", 10, 1, 100)
    start = _list_time(q.get("start_time"), "start_time")
    end = _list_time(q.get("end_time"), "end_time")
    tasks = emu.manager.listed(account, q.get("status"), q.get("model_name"), start, end)
    page = tasks[(page_no - 1) * page_size : page_no * page_size]
    data = [emu.manager.list_entry(t) for t in page]
    return _json(
        {
            "request_id": _request_id(),
            "data": data,
            "total": len(tasks),
            "total_page": -(-len(tasks) // page_size),
            "page_no": page_no,
            "page_size": page_size,
        }
    )


# -- uploads and results ----------------------------------------------------------------------


async def upload_policy(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    _authorize(request, emu)
    if request.query.get("action") != "getPolicy":
        raise invalid("action must be getPolicy.")
    model = request.query.get("model")
    if not model:
        raise invalid("model is required.")
    policy = issue_policy(emu.signer, model, emu.config.clock())
    return _json(
        {"request_id": _request_id(), "data": policy.as_json(_origin(request) + UPLOAD_PATH)}
    )


async def upload(request: web.Request) -> web.StreamResponse:
    """OSS PostObject as the SDK performs it (no Authorization; the policy is the credential)."""
    emu = request.app[EMULATOR]
    try:
        form = await request.post()
    except (ValueError, web.HTTPRequestEntityTooLarge, AssertionError):
        raise BackendError("InvalidArgument", "Malformed upload form.", status=400) from None
    key, file = str(form.get("key", "")), form.get("file")
    why = check_upload(
        emu.signer, str(form.get("policy", "")), str(form.get("Signature", "")), key,
        emu.config.clock(),
    )  # fmt: skip
    if why:
        raise BackendError("AccessDenied", f"Upload refused: {why}.", status=403)
    if not isinstance(file, web.FileField):
        raise BackendError("InvalidArgument", "The form has no file field.", status=400)
    await emu.store.put(upload_key(key), file.file.read())
    emu.stats.uploads += 1
    return web.Response(status=200)


async def download(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    why = emu.signer.check_path(
        request.path,
        request.query.get("Expires", ""),
        request.query.get("Signature", ""),
        emu.config.clock(),
    )
    if why == "signature":
        raise BackendError(
            "SignatureDoesNotMatch", "The request signature does not match.", status=403
        )
    fault = emu.faults.pick("download")
    if why == "expired" or fault == "download.expired":
        raise BackendError("AccessDenied", "Request has expired.", status=403)
    if fault == "download.500":
        raise BackendError("InternalError", "We encountered an internal error.", status=500)
    data = await emu.store.get(request.path.lstrip("/"))
    if data is None:
        raise BackendError("NoSuchKey", "The specified key does not exist.", status=404)
    emu.stats.downloads += 1
    return web.Response(body=data, content_type="image/png")


async def stats(request: web.Request) -> web.StreamResponse:
    return _json(request.app[EMULATOR].snapshot())


class RedactedAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings (result URLs carry their signature there)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )
