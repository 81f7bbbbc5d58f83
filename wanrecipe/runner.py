"""Running a recipe: pick the backend, open the client, run the scheduler, write the record.

The embedded emulator is started here, in-process on 127.0.0.1 port 0, and from then on it is
just another base URL: the client below talks to it over HTTP exactly as it talks to DashScope.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from . import wire
from .errors import RecipeError, UsageError
from .recipe.names import run_dir_name
from .redact import has_userinfo, redact_url, redact_value
from .report.events import Event, EventSink, discard
from .report.record import RunRecord, StepRecord

BackendKind = Literal["local", "dashscope", "url"]
#: The key sent to servers that are not DashScope when the user has none: never a real one.
LOCAL_API_KEY = "sk-wanrecipe-local"
T = TypeVar("T")


@dataclass(frozen=True)
class BackendChoice:
    """Where requests go. ``local`` starts the embedded emulator for the run."""

    kind: BackendKind = "local"
    base_url: str | None = None
    api_key: str = field(default=LOCAL_API_KEY, repr=False)
    region: str = wire.DEFAULT_REGION

    @property
    def label(self) -> str:
        if self.kind == "local":
            return "local"
        if self.kind == "dashscope":
            return (
                f"dashscope:{self.region}"
                if not self.base_url
                else f"dashscope:{_host(self.base_url)}"
            )
        return f"url:{_host(self.base_url or '')}"


def choose_backend(
    backend: str | None = None,
    *,
    base_url: str | None = None,
    region: str | None = None,
    env: Mapping[str, str] | None = None,
) -> BackendChoice:
    """Resolve flags and environment into a backend. Raises UsageError.

    Precedence: flag > ``WANRECIPE_*`` env > default (``local``). The paid service is never
    chosen because a key happens to be set, and no request leaves this machine without
    ``--backend dashscope``.
    """
    env = os.environ if env is None else env
    kind = backend or env.get("WANRECIPE_BACKEND") or None
    base_url = base_url or env.get("WANRECIPE_BASE_URL") or None
    region = region or env.get("DASHSCOPE_API_REGION") or wire.DEFAULT_REGION
    if kind not in (None, "local", "dashscope"):
        raise UsageError(f"unknown backend {kind!r}: use local or dashscope")
    if region not in wire.BASE_URLS:
        raise UsageError(f"unknown region {region!r}: use " + " or ".join(wire.BASE_URLS))

    if kind == "dashscope":
        key = env.get("DASHSCOPE_API_KEY", "").strip()
        if not key:
            raise UsageError(
                "--backend dashscope needs DASHSCOPE_API_KEY in the environment "
                "(a paid run: $0.02 per image)"
            )
        url = base_url or env.get("DASHSCOPE_HTTP_BASE_URL") or wire.BASE_URLS[region]
        return BackendChoice("dashscope", _check_url(url), key, region)
    if base_url:
        url = _check_url(base_url)
        if not _is_loopback(url):
            raise UsageError(
                f"{_host(url)} is not on this machine; a run that may cost money needs "
                "--backend dashscope to say so"
            )
        key = env.get("DASHSCOPE_API_KEY", "").strip() or LOCAL_API_KEY
        return BackendChoice("url", url, key, region)
    if kind == "local" or kind is None:
        return BackendChoice("local")
    raise AssertionError(kind)


def _check_url(url: str) -> str:
    if has_userinfo(url):
        # Never echoed: the password part is usually the key itself.
        raise UsageError(
            f"the base URL {redact_url(url)} carries a user name or password (user:...@HOST); "
            "pass the key in DASHSCOPE_API_KEY instead"
        )
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        valid = False
    if not valid:
        raise UsageError(f"base URL must be http(s)://HOST[:PORT]/api/v1, not {redact_url(url)!r}")
    return url.rstrip("/")


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else url


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.asynccontextmanager
async def open_backend(choice: BackendChoice) -> AsyncIterator[str]:
    """Yield the base URL to talk to, starting the embedded emulator for ``local``."""
    if choice.kind != "local":
        assert choice.base_url
        yield choice.base_url
        return
    from .emulator.config import EmulatorConfig
    from .emulator.server import running_emulator

    engines = await asyncio.to_thread(_early_engines.take)
    try:
        async with running_emulator(EmulatorConfig(), executor=engines) as emu:
            yield emu.base_url
    finally:
        if engines is not None:  # ours, not the emulator's: shut it down here
            await asyncio.to_thread(engines.shutdown, True, cancel_futures=True)


class _EarlyEngines:
    """The embedded emulator's engine workers, started while the CLI checks the recipe (their
    start and imports take about a second), then handed to the emulator by open_backend."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pool: Any = None

    def start(self) -> None:
        if self._thread is not None:
            return
        # Imported here, not in the thread: two threads importing one package at once can
        # trip over its half-initialised parent.
        from .emulator.app import make_executor
        from .emulator.config import EmulatorConfig
        from .emulator.server import running_emulator  # noqa: F401  (open_backend's, now)

        def run() -> None:
            config = EmulatorConfig()
            pool = make_executor(config.executor, config.workers)
            for _ in range(config.workers):
                pool.submit(_warm_engine)  # starts a worker process and loads the engines
            self._pool = pool

        self._thread = threading.Thread(target=run, name="wanrecipe-engines", daemon=True)
        self._thread.start()

    def take(self) -> Any:
        """The started pool (None if none was started); the caller owns it from now on."""
        if self._thread is None:
            return None
        self._thread.join()
        pool, self._pool, self._thread = self._pool, None, None
        return pool


_early_engines = _EarlyEngines()


def start_engines_early(choice: BackendChoice) -> None:
    """For the local backend: start the emulator's engine workers now, in the background, so
    the first task does not wait for them (the CLI calls this before checking the recipe)."""
    if choice.kind == "local":
        _early_engines.start()


def _warm_engine() -> None:
    from .emulator import engines  # noqa: F401  (the imports the first task would pay)


def default_run_dir(recipe_name: str, now: datetime | None = None) -> Path:
    """``runs/<name>/<UTC timestamp>``; a second run in the same second gets ``-2``, ..."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    # A name never steers the path (`../x`, `/abs`): validate warns when it was changed.
    base = Path("runs") / run_dir_name(recipe_name) / stamp
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{stamp}-{number}")
    return candidate


def default_state_dir(recipe_path: Path, env: Mapping[str, str] | None = None) -> Path:
    """``WANRECIPE_STATE_DIR``, else ``.wanrecipe/`` beside the recipe (like ``.git``)."""
    env = os.environ if env is None else env
    given = env.get("WANRECIPE_STATE_DIR")
    return Path(given) if given else Path(recipe_path).resolve().parent / ".wanrecipe"


def with_dependants(recipe: Any, steps: Sequence[str]) -> frozenset[str]:
    """The steps and everything downstream of them. Raises UsageError for unknown ids.

    A step with foreach:/matrix: may be named as written (``styles``: all its instances)."""
    ids = [i for s in steps for i in (recipe.instances(s) or (s,))]
    unknown = [s for s in ids if s not in recipe.step_ids]
    if unknown:
        written = [s.id for s in getattr(recipe, "steps_as_written", recipe.steps)]
        raise UsageError(f"no step {unknown[0]!r} in {recipe.name}; steps: {', '.join(written)}")
    found: set[str] = set()
    todo = list(ids)
    while todo:
        sid = todo.pop()
        if sid not in found:
            found.add(sid)
            todo.extend(recipe.dependents(sid))
    return frozenset(found)


async def execute(
    recipe: Any,
    *,
    backend: BackendChoice,
    run_dir: Path,
    options: Any = None,
    on_event: EventSink = discard,
    handle_signals: bool = False,
    state_dir: str | os.PathLike[str] | None = None,
    blobs: str | None = None,
) -> RunRecord:
    """Run a loaded recipe to the end and return its record (also written to run.json).

    ``state_dir``: a state directory or a ``postgresql://`` URL (``--state``; default
    ``WANRECIPE_STATE``, else ``.wanrecipe/`` beside the recipe). ``blobs``: where images
    live (a directory or ``s3://bucket/prefix``; default ``WANRECIPE_BLOBS``, else the
    state directory)."""
    from .store import open_state

    state = await asyncio.to_thread(
        open_state, state_dir, default_dir=default_state_dir(recipe.path), blobs=blobs
    )
    try:
        return await _execute(recipe, backend, run_dir, options, on_event, handle_signals, state)
    finally:
        state.close()


async def _execute(
    recipe: Any,
    backend: BackendChoice,
    run_dir: Path,
    options: Any,
    on_event: EventSink,
    handle_signals: bool,
    state: Any,
) -> RunRecord:
    from .backends.dashscope import DashScopeClient
    from .executor.ledger import close_gate, ledger_home, open_gate
    from .executor.scheduler import RunOptions, Scheduler
    from .recipe.render import render_outputs, render_step

    options = options or RunOptions()
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(
        recipe=str(recipe.path),
        name=recipe.name,
        params=cast(dict[str, Any], redact_value(dict(recipe.params))),
        backend=backend.label,
        base_url="",
        run_dir=str(run_dir),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        steps=_step_records(recipe),
    )
    loop = asyncio.get_running_loop()
    async with open_backend(backend) as base_url:
        record.base_url = redact_url(base_url) if backend.kind != "dashscope" else _host(base_url)
        on_event(
            Event(
                "run_started",
                0.0,
                data={
                    "backend": backend.label,
                    "base_url": record.base_url,
                    "run_dir": str(run_dir),
                    "steps": len(record.steps),
                },
            )
        )
        # The embedded emulator is this process's own; any other server's quota is shared
        # with the other runs using this state directory.
        gate = open_gate(
            options.quota,
            shared_in=ledger_home(state) if backend.kind != "local" else None,
            base_url=base_url,
            api_key=backend.api_key,
        )
        async with DashScopeClient(base_url, backend.api_key) as client:
            scheduler = Scheduler(
                recipe,
                client,
                record=record,
                run_dir=run_dir,
                backend=backend.label,
                options=options,
                render=render_step,
                on_event=on_event,
                state=state,
                durations=_load_durations(state.path, backend.label, options.poll),
                gate=gate,
            )
            interrupts = 0

            def on_sigint() -> None:
                nonlocal interrupts
                interrupts += 1
                if interrupts == 1:
                    scheduler.stop("interrupted (Ctrl-C); press Ctrl-C again to stop at once")
                else:
                    scheduler.abort()

            if handle_signals:
                loop.add_signal_handler(signal.SIGINT, on_sigint)
                loop.add_signal_handler(signal.SIGTERM, on_sigint)
            try:
                await scheduler.run()
            except BaseException as exc:
                # A bug or a hard stop: still leave the record of what finished (its images
                # are in the run directory and the store), then let the error through.
                cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
                record.status = "interrupted" if cancelled else "failed"
                record.elapsed_s = round(scheduler.elapsed(), 3)
                record.finished = datetime.now(UTC).isoformat(timespec="seconds")
                record.write(run_dir / "run.json")
                raise
            finally:
                if handle_signals:
                    loop.remove_signal_handler(signal.SIGINT)
                    loop.remove_signal_handler(signal.SIGTERM)
                await close_gate(gate)
            elapsed = scheduler.elapsed()
            _save_durations(state.path, backend.label, scheduler.durations)
            interrupted = scheduler.stopping is not None and not options.fail_fast
    outputs_failed = False
    try:
        outputs = _collect_outputs(recipe, record, run_dir, render_outputs)
    except RecipeError as exc:
        outputs_failed = True
        # The steps' images are stored and linked: say what is wrong with `outputs:` in the
        # record (the CLI prints its warnings) rather than losing run.json to a traceback.
        outputs = {}
        record.warnings.extend(d.format() for d in exc.diagnostics)
    record.outputs = outputs
    record.elapsed_s = round(elapsed, 3)
    record.finished = datetime.now(UTC).isoformat(timespec="seconds")
    if scheduler.budget_reached:
        record.status = "budget"
    elif interrupted:
        record.status = "interrupted"
    elif record.failed or record.unavailable or outputs_failed:
        record.status = "failed"
    else:
        record.status = "ok"
    record.write(run_dir / "run.json")
    on_event(
        Event(
            "run_finished",
            elapsed,
            data={
                "status": record.status,
                "images": record.images_billed,
                "cost_usd": str(record.cost_usd),
                "outputs": outputs,
            },
        )
    )
    return record


def _step_records(recipe: Any) -> dict[str, StepRecord]:
    """One record per step that runs, and one per step ``if:`` (or a skipped dependency)
    leaves out, already ``skipped`` with its reason; fanned-out instances carry their values."""
    records = {s.id: StepRecord(s.id, s.function, fanout=_fanout(s)) for s in recipe.steps}
    for skip in getattr(recipe, "skipped", {}).values():
        records[skip.id] = StepRecord(
            skip.id,
            skip.function,
            state="skipped",
            skipped_because=skip.reason,
            fanout=_fanout(skip),
        )
    return records


def _fanout(step: Any) -> dict[str, Any] | None:
    if step.fanout is None:
        return None
    return {"group": step.group, **json.loads(json.dumps(step.fanout.describe(), default=str))}


def _load_durations(state_path: Path, label: str, policy: Any) -> Any:
    """What earlier runs in this backend's realm learned about task durations, so the first
    tasks of a run are polled as well as the last ones."""
    from .executor.learned import DurationModel, load_durations

    return load_durations(state_path, label, DurationModel(policy))


def _save_durations(state_path: Path, label: str, model: Any) -> None:
    from .executor.learned import save_durations

    save_durations(state_path, label, model)


def _collect_outputs(
    recipe: Any, record: RunRecord, run_dir: Path, render_outputs: Any
) -> dict[str, list[str]]:
    from .executor.inputs import StepImage

    done: dict[str, list[StepImage]] = {}
    for sid, step in record.steps.items():
        if step.state in ("done", "cached"):
            done[sid] = [
                StepImage(
                    sid,
                    r.index,
                    run_dir / r.path,
                    r.sha256,
                    r.size,
                    r.width,
                    r.height,
                    None,
                    0.0,
                    record.backend,
                )
                for r in step.results
            ]
    rendered = render_outputs(recipe, done)
    result: dict[str, list[str]] = {}
    for name, value in rendered.items():
        values: Sequence[object] = value if isinstance(value, list | tuple) else [value]
        result[name] = [str(v) for v in values]
    return result


def run_recipe(
    path: str | os.PathLike[str],
    *,
    params: Mapping[str, Any] | None = None,
    param_files: Sequence[str | os.PathLike[str]] = (),
    backend: BackendChoice | str | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    options: Any = None,
    on_event: EventSink = discard,
    state_dir: str | os.PathLike[str] | None = None,
    state: str | None = None,
    blobs: str | None = None,
) -> RunRecord:
    """Load, check and run a recipe; return the run record. Raises RecipeError before any
    request when the recipe or its inputs are invalid. ``state``: a state directory or a
    ``postgresql://`` URL, as ``--state`` (wins over ``state_dir``)."""
    from .api import load_recipe

    recipe = load_recipe(path, params, param_files)  # every check, once; raises RecipeError
    choice = backend if isinstance(backend, BackendChoice) else choose_backend(backend)
    out = Path(run_dir) if run_dir is not None else default_run_dir(recipe.name)
    return run_blocking(
        execute(
            recipe,
            backend=choice,
            run_dir=out,
            options=options,
            on_event=on_event,
            state_dir=state if state is not None else state_dir,
            blobs=blobs,
        )
    )


def run_blocking(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end from synchronous code and return its result.

    Where this thread already runs an event loop (a Jupyter kernel, an async web framework
    calling sync code) ``asyncio.run`` would refuse; the run then gets a fresh loop in a
    thread of its own, and this thread waits for it. A KeyboardInterrupt while waiting (the
    kernel's "interrupt") cancels the run, which records itself as interrupted, and is then
    raised here.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main)
    box: dict[str, Any] = {}
    started = threading.Event()
    finished = threading.Event()

    async def wrapper() -> T:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await main

    def target() -> None:
        try:
            box["value"] = asyncio.run(wrapper())
        except BaseException as exc:  # handed to the waiting thread below
            box["error"] = exc
        finally:
            started.set()
            finished.set()

    thread = threading.Thread(target=target, name="wanrecipe-run", daemon=True)
    thread.start()
    try:
        _wait_interruptibly(finished)
    except KeyboardInterrupt:
        started.wait()
        if "task" in box:
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        _wait_interruptibly(finished)  # the run records itself as interrupted
        raise
    thread.join()
    if "error" in box:
        raise box["error"]
    return cast(T, box["value"])


#: How often a thread waiting for a run wakes up to let a pending Ctrl-C through.
_INTERRUPT_POLL_S = 0.05


def _wait_interruptibly(finished: threading.Event) -> None:
    """Wait for ``finished`` in short slices, never in one blocking ``Thread.join()``.

    A SIGINT is delivered to whichever thread the kernel picks; Python runs its handler (the
    KeyboardInterrupt) only in the main thread, the next time that thread runs bytecode. A
    main thread blocked in an untimed wait is woken only if the signal landed on it, so an
    interrupt landing on the run's thread waited for the whole run (it went on to the next
    step). Waking every few ms bounds that delay, so the run stops submitting at once. (And
    ``Thread.join()`` interrupted by KeyboardInterrupt marks a thread still running as stopped
    on Python 3.11, so a second join would not wait for the cancelled run to record itself.)
    """
    while not finished.wait(_INTERRUPT_POLL_S):
        pass
