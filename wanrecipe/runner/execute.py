"""Running one recipe: open the session, run the scheduler, write the record."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from ..errors import RecipeError
from ..redact import redact_url, redact_value
from ..report.events import Event, EventSink, discard
from ..report.record import RunRecord
from .choice import BackendChoice, choose_backend, host_of
from .records import collect_outputs, default_run_dir, default_state_dir, step_records
from .session import open_session, save_durations

T = TypeVar("T")


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
    from ..executor.scheduler import RunOptions
    from ..recipe.render import render_outputs, render_step

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
        steps=step_records(recipe),
    )
    # The embedded emulator is this process's own; any other server's quota is shared with
    # the other runs using this state directory.
    async with open_session(
        backend,
        state_dir,
        options,
        default_dir=default_state_dir(recipe.path),
        shared_quota=backend.kind != "local",
        blobs=blobs,
    ) as session:
        base_url = session.base_url
        record.base_url = redact_url(base_url) if backend.kind != "dashscope" else host_of(base_url)
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
        scheduler = session.scheduler(
            recipe, record=record, run_dir=run_dir, backend=backend.label, options=options,
            render=render_step, on_event=on_event,
        )  # fmt: skip
        try:
            await session.run(scheduler, handle_signals=handle_signals)
        except BaseException as exc:
            # A bug or a hard stop: still leave the record of what finished (its images are
            # in the run directory and the store), then let the error through.
            cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
            record.status = "interrupted" if cancelled else "failed"
            record.elapsed_s = round(scheduler.elapsed(), 3)
            record.finished = datetime.now(UTC).isoformat(timespec="seconds")
            record.write(run_dir / "run.json")
            raise
        elapsed = scheduler.elapsed()
        save_durations(session.state.path, backend.label, scheduler.durations)
        interrupted = scheduler.stopping is not None and not options.fail_fast
    outputs_failed = False
    try:
        outputs = collect_outputs(recipe, record, run_dir, render_outputs)
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
    from ..api import load_recipe
    from .embedded import discard_early, start_embedded_early

    choice = backend if isinstance(backend, BackendChoice) else choose_backend(backend)
    start_embedded_early(choice)  # comes up while the recipe is checked (embedded.py)
    try:
        recipe = load_recipe(path, params, param_files)  # every check, once; RecipeError
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
    finally:
        discard_early()  # one no run took (the recipe was invalid)


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
