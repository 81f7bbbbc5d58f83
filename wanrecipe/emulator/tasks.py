"""Task store and lifecycle: PENDING -> RUNNING -> SUCCEEDED | FAILED, PENDING -> CANCELED.

The scheduler hands out ``concurrency`` running slots in submission order; a task's latency
clock starts when it gets its slot. Engines run in an executor (a process pool by default) so
the event loop keeps answering queries while images are computed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import wire
from ..errors import BackendError, ImageInputError
from .accounts import Account
from .config import EmulatorConfig
from .engines import EditRequest, EditResult, derive_seed, render
from .faults import TASK_FAULT_CODES, FaultInjector
from .inputs import Fetcher
from .stats import Stats
from .storage import BlobStore, Signer, result_key, result_path
from .validation import SubmitRequest, api_error, check_inputs

log = logging.getLogger(__name__)

_OUTPUT_FAULT = wire.ERRORS["InternalError.Timeout"]


@dataclass
class Task:
    task_id: str
    request: SubmitRequest
    seed: int
    index: int  # submission order, for deterministic draws
    own_port: int
    submit_time: float
    account: Account
    fault: str | None = None
    status: str = "PENDING"
    scheduled_time: float | None = None
    end_time: float | None = None
    code: str | None = None
    message: str | None = None
    #: per output: a signed path ("/results/...png?Expires=..") or an error (code, message)
    results: list[str | tuple[str, str]] = field(default_factory=list)
    inputs: tuple[bytes, bytes | None] | None = None  # pre-fetched when validated at submit
    #: per output index: the engine's labels (fidelity, engine, note), as in the PNG's chunks
    labels: dict[int, dict[str, str]] = field(default_factory=dict)

    @property
    def api_key_id(self) -> str:
        return self.account.id

    @property
    def succeeded(self) -> int:
        return sum(isinstance(r, str) for r in self.results)

    def metrics(self) -> dict[str, int]:
        n = self.request.n
        if self.status in ("SUCCEEDED", "FAILED"):
            return {"TOTAL": n, "SUCCEEDED": self.succeeded, "FAILED": n - self.succeeded}
        return {"TOTAL": n, "SUCCEEDED": 0, "FAILED": 0}


def _without_payloads(request: SubmitRequest) -> SubmitRequest:
    """Drop decoded data-URI bytes once a task is done with them (tasks live 24 h)."""
    mask = request.mask and replace(request.mask, data=None)
    return replace(request, base=replace(request.base, data=None), mask=mask)


def task_latency(config: EmulatorConfig, index: int) -> float:
    """Seconds from RUNNING to the end for the ``index``-th task (at least the engine time)."""
    latency = config.latency
    if latency == "fast":
        return 0.0
    if latency == "realistic":
        return random.Random(f"{config.seed}:latency:{index}").uniform(5.0, 15.0)
    return float(latency)


class TaskManager:
    def __init__(
        self,
        config: EmulatorConfig,
        *,
        stats: Stats,
        faults: FaultInjector,
        store: BlobStore,
        signer: Signer,
        executor: Callable[[], Executor],
        fetcher: Callable[[], Fetcher],
    ) -> None:
        self.config = config
        self.stats = stats
        self.faults = faults
        self.store = store
        self.signer = signer
        self._executor = executor
        self._fetcher = fetcher
        self.tasks: dict[str, Task] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._count = 0
        self._closing = False
        self._tz = timezone(timedelta(hours=config.utc_offset_hours))

    # -- submission -------------------------------------------------------------------------

    def both(self, account: Account) -> tuple[Stats, Stats]:
        """The counters a task's events go to: the totals and its account's."""
        return self.stats, account.stats

    def admit(self, account: Account) -> None:
        """Raise 429 Throttling.AllocationQuota when rejecting over-concurrency submits
        (the account's own running and queued tasks against its quota)."""
        cfg = self.config
        if cfg.over_concurrency != "reject" or cfg.concurrency == 0:
            return
        busy = account.stats.running + len(account.queue)
        if busy >= cfg.concurrency:
            for stats in self.both(account):
                stats.throttles["concurrency"] += 1
            raise api_error("Throttling.AllocationQuota")

    def create(
        self,
        request: SubmitRequest,
        *,
        own_port: int,
        account: Account,
        inputs: tuple[bytes, bytes | None] | None = None,
    ) -> Task:
        index = self._count
        self._count += 1
        seed = request.seed if request.seed is not None else self._draw_seed(index)
        task = Task(
            task_id=str(uuid.uuid4()),
            request=request,
            seed=seed,
            index=index,
            own_port=own_port,
            submit_time=self.config.clock(),
            account=account,
            fault=self.faults.pick("task"),
            inputs=inputs,
        )
        self.tasks[task.task_id] = task
        for stats in self.both(account):
            stats.tasks["PENDING"] += 1
        account.queue.append(task)
        self._pump(account)
        return task

    def _draw_seed(self, index: int) -> int:
        return random.Random(f"{self.config.seed}:seed:{index}").randrange(2**31)

    def _pump(self, account: Account) -> None:
        if self._closing:
            return
        limit = self.config.concurrency
        while account.queue and (limit == 0 or account.stats.running < limit):
            task = account.queue.popleft()
            # RUNNING from this instant, so a cancel or query in between sees the truth.
            task.status = "RUNNING"
            task.scheduled_time = self.config.clock()
            for stats in self.both(account):
                stats.tasks["RUNNING"] += 1
                stats.task_started()
            job = asyncio.get_running_loop().create_task(self._run(task))
            self._running.add(job)
            job.add_done_callback(self._running.discard)

    # -- queries ----------------------------------------------------------------------------

    def get(self, task_id: str, account: Account | None = None) -> Task | None:
        """The task, if it lives (and, given ``account``, is that account's: another
        account's task is as unknown to it as one that never was)."""
        task = self.tasks.get(task_id)
        if task is not None and self._expired(task):
            self._forget(task)
            return None
        if task is not None and account is not None and task.account is not account:
            return None
        return task

    def cancel(self, task_id: str, account: Account | None = None) -> bool:
        task = self.get(task_id, account)
        if task is None or task.status != "PENDING":
            return False
        task.account.queue.remove(task)
        task.status = "CANCELED"
        task.end_time = self.config.clock()
        task.inputs = None
        task.request = _without_payloads(task.request)
        for stats in self.both(task.account):
            stats.tasks["CANCELED"] += 1
        return True

    def live_counts(self, account: Account | None = None) -> Counter[str]:
        return Counter(
            t.status for t in self.tasks.values() if account is None or t.account is account
        )

    def _expired(self, task: Task) -> bool:
        return (
            task.status in wire.TERMINAL_STATUSES
            and self.config.clock() >= task.submit_time + self.config.task_ttl
        )

    def _forget(self, task: Task) -> None:
        del self.tasks[task.task_id]
        for stats in self.both(task.account):
            stats.tasks_expired += 1
        if task.results:
            job = asyncio.get_running_loop().create_task(
                self.store.delete_prefix(f"results/{task.task_id}/")
            )
            self._running.add(job)
            job.add_done_callback(self._running.discard)

    def sweep(self) -> None:
        """Forget every expired task (also done lazily on access)."""
        for task in [t for t in self.tasks.values() if self._expired(t)]:
            self._forget(task)

    async def close(self) -> None:
        self._closing = True
        for job in list(self._running):
            job.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    # -- running ----------------------------------------------------------------------------

    async def _run(self, task: Task) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + task_latency(self.config, task.index)
        try:
            if task.fault is not None:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                code = TASK_FAULT_CODES[task.fault]
                raise api_error(code)
            await self._compute(task)
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if task.succeeded:
                self._finish(task, "SUCCEEDED")
            else:
                code, message = next(r for r in task.results if isinstance(r, tuple))
                self._finish(task, "FAILED", code, message)
        except BackendError as exc:
            self._finish(task, "FAILED", exc.code, exc.message)
        except ImageInputError as exc:
            # The engine's own decode found what the header check could not (truncated data...).
            self._finish(task, "FAILED", "InvalidParameter", str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s: engine failure", task.task_id)
            error = wire.ERRORS["InternalError.Algo"]
            self._finish(task, "FAILED", error.code, error.message)
        finally:
            task.inputs = None
            task.request = _without_payloads(task.request)
            for stats in self.both(task.account):
                stats.running -= 1
            self._pump(task.account)

    async def _compute(self, task: Task) -> None:
        req = task.request
        if task.inputs is None:
            fetcher = self._fetcher()
            now = self.config.clock()
            base = await fetcher.fetch(req.base, own_port=task.own_port, now=now)
            mask = (
                None
                if req.mask is None
                else await fetcher.fetch(req.mask, own_port=task.own_port, now=now)
            )
            check_inputs(req, base, mask, self.config.max_output_pixels)
        else:
            base, mask = task.inputs
        loop = asyncio.get_running_loop()
        executor = self._executor()
        jobs: list[asyncio.Future[EditResult] | None] = []
        for i in range(req.n):
            if self.faults.pick("output") is not None:
                jobs.append(None)
                continue
            edit = EditRequest(
                function=req.function,
                image=base,
                prompt=req.prompt,
                parameters=req.parameters,
                seed=derive_seed(task.seed, i),
                index=i,
                mask=mask,
                badge=self.config.badge,
                max_output_pixels=self.config.max_output_pixels,
                time_budget=self.config.engine_time_budget,
            )
            jobs.append(loop.run_in_executor(executor, render, edit))
        done = await asyncio.gather(*(j for j in jobs if j is not None))
        rendered = iter(done)
        now = self.config.clock()
        for i, job in enumerate(jobs):
            if job is None:
                task.results.append((_OUTPUT_FAULT.code, _OUTPUT_FAULT.message))
                for stats in self.both(task.account):
                    stats.failed_outputs += 1
                continue
            result = next(rendered)
            await self.store.put(result_key(task.task_id, i), result.png)
            path = result_path(task.task_id, i)
            task.labels[len(task.results)] = {
                "fidelity": result.fidelity,
                "engine": result.engine,
                "note": result.note,
            }
            task.results.append(
                f"{path}?{self.signer.signed_query(path, now, self.config.url_ttl)}"
            )

    def _finish(
        self, task: Task, status: str, code: str | None = None, message: str | None = None
    ) -> None:
        task.status = status
        task.code, task.message = code, message
        task.end_time = self.config.clock()
        for stats in self.both(task.account):
            stats.tasks[status] += 1
            if status == "SUCCEEDED":
                stats.billed_images += task.succeeded

    # -- the task list ----------------------------------------------------------------------

    def listed(
        self,
        account: Account,
        status: str | None,
        model: str | None,
        start: datetime | None,
        end: datetime | None,
    ) -> list[Task]:
        """The account's own tasks that match, newest first (no other account's, ever)."""
        self.sweep()

        def keep(task: Task) -> bool:
            if task.account is not account:
                return False
            if status and task.status != status.upper():
                return False
            if model and model != wire.MODEL:
                return False
            submitted = datetime.strptime(
                self.timestamp(task.submit_time)[:19], "%Y-%m-%d %H:%M:%S"
            )
            return (start is None or submitted >= start) and (end is None or submitted <= end)

        return sorted(
            (t for t in self.tasks.values() if keep(t)), key=lambda t: t.index, reverse=True
        )

    @staticmethod
    def list_entry(task: Task) -> dict[str, Any]:
        return {
            "task_id": task.task_id,
            "status": task.status,
            "model_name": wire.MODEL,
            "region": "cn-beijing",
            "api_key_id": task.api_key_id,
            "gmt_create": int(task.submit_time * 1000),
            "start_time": int((task.scheduled_time or task.submit_time) * 1000),
            "end_time": int(task.end_time * 1000) if task.end_time else None,
        }

    # -- bodies -----------------------------------------------------------------------------

    def timestamp(self, t: float) -> str:
        return wire.format_time(datetime.fromtimestamp(t, self._tz))

    def output(self, task: Task, origin: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The ``output`` object of a query answer, and ``usage`` when there is one."""
        out: dict[str, Any] = {"task_id": task.task_id, "task_status": task.status}
        out["submit_time"] = self.timestamp(task.submit_time)
        if task.scheduled_time is not None:
            out["scheduled_time"] = self.timestamp(task.scheduled_time)
        if task.end_time is not None:
            out["end_time"] = self.timestamp(task.end_time)
        usage = None
        if task.status == "SUCCEEDED":
            out["results"] = [
                {"url": origin + r, **task.labels.get(i, {})}
                if isinstance(r, str)
                else {"code": r[0], "message": r[1]}
                for i, r in enumerate(task.results)
            ]
            usage = {"image_count": task.succeeded}
        elif task.status == "FAILED":
            out["code"] = task.code
            out["message"] = task.message
        out["task_metrics"] = task.metrics()
        return out, usage
