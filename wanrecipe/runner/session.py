"""What a run (a recipe, or a batch of rows) opens before its first request and closes after
its last: the state directory, the backend (the embedded emulator for ``local``), the quota
gate and the client; and, while the scheduler runs, Ctrl-C and the embedded emulator's
process.

One function, :func:`open_session`, for the single run and the batch alike: where the state
(or, later, the blob store) is opened from a URL, it is opened here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .choice import BackendChoice
from .embedded import open_watched_backend


@dataclass
class Session:
    """What the scheduler of a run talks through."""

    state: Any  # StateDir
    base_url: str
    gate: Any  # QuotaGate
    client: Any  # DashScopeClient
    #: What earlier runs in this backend's realm learned about task durations.
    durations: Any  # DurationModel
    #: Why the backend stopped serving (the embedded emulator's process ended), or None;
    #: None itself for a backend whose process is not the run's (nothing to watch).
    backend_gone: Callable[[], str | None] | None = None

    def scheduler(
        self,
        graph: Any,
        *,
        record: Any,
        run_dir: Path,
        backend: str,
        options: Any,
        render: Any,
        on_event: Any,
        budget: Any = None,
    ) -> Any:
        """The scheduler of ``graph`` (a recipe, or a batch's rows) on this session's client,
        state, quota gate and learned durations."""
        from ..executor.scheduler import Scheduler

        return Scheduler(
            graph, self.client, record=record, run_dir=run_dir, backend=backend,
            options=options, render=render, on_event=on_event, state=self.state,
            durations=self.durations, gate=self.gate, budget=budget,
        )  # fmt: skip

    async def run(self, scheduler: Any, *, handle_signals: bool) -> None:
        """Run ``scheduler`` to its end: Ctrl-C stops it cleanly (``handle_signals``), and a
        backend that stops serving stops it at once (see :func:`watching_backend`)."""
        with interruptible(scheduler, handle_signals):
            async with watching_backend(scheduler, self):
                await scheduler.run()


@contextlib.asynccontextmanager
async def open_session(
    backend: BackendChoice,
    state_dir: str | os.PathLike[str] | None,
    options: Any,
    *,
    default_dir: Path,
    shared_quota: bool,
    blobs: str | None = None,
) -> AsyncIterator[Session]:
    """Open the state dir, the backend, the quota gate and the client; close them in reverse.

    ``state_dir``: a state directory or a ``postgresql://`` URL (``--state``); None:
    ``WANRECIPE_STATE``, else ``default_dir``. ``blobs``: where images live (a directory or
    ``s3://bucket/prefix``; default ``WANRECIPE_BLOBS``, else the state directory).

    ``shared_quota``: take running slots and submit tokens from the state directory's ledger
    too (every run on this state dir shares the account's quota), not only from this
    process's own gate."""
    from ..backends.dashscope import DashScopeClient
    from ..executor.ledger import close_gate, ledger_home, open_gate
    from ..store import open_state

    state = await asyncio.to_thread(open_state, state_dir, default_dir=default_dir, blobs=blobs)
    try:
        async with open_watched_backend(backend) as (base_url, gone):
            gate = open_gate(
                options.quota,
                shared_in=ledger_home(state) if shared_quota else None,
                base_url=base_url,
                api_key=backend.api_key,
            )
            try:
                async with DashScopeClient(base_url, backend.api_key) as client:
                    durations = load_durations(state.path, backend.label, options.poll)
                    yield Session(state, base_url, gate, client, durations, gone)
            finally:
                await close_gate(gate)
    finally:
        state.close()


@contextlib.contextmanager
def interruptible(scheduler: Any, enabled: bool) -> Iterator[None]:
    """While the scheduler runs: the first Ctrl-C (or SIGTERM) stops it cleanly, the second
    at once."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            scheduler.stop("interrupted (Ctrl-C); press Ctrl-C again to stop at once")
        else:
            scheduler.abort()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, on_sigint)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)


#: How often a run looks whether the embedded emulator's process is still there.
BACKEND_WATCH_S = 0.25


@contextlib.asynccontextmanager
async def watching_backend(scheduler: Any, session: Session) -> AsyncIterator[None]:
    """While the scheduler runs: if the backend stops serving (the embedded emulator's
    process was killed: the OOM killer, a stray ``kill``), stop the run at once, saying why,
    rather than retrying a dead server until each step's timeout. Nothing is lost: what was
    done is stored, and the emulator bills nothing."""

    if session.backend_gone is None:  # not the run's process: nothing to watch
        yield
        return
    gone = session.backend_gone

    async def watch() -> None:
        while True:
            await asyncio.sleep(BACKEND_WATCH_S)
            reason = gone()
            if reason is not None:
                scheduler.stop(reason)
                scheduler.abort()  # its tasks are gone: nothing to wait for
                return

    watcher = asyncio.get_running_loop().create_task(watch(), name="backend-watch")
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def load_durations(state_path: Path, label: str, policy: Any) -> Any:
    """What earlier runs in this backend's realm learned about task durations, so the first
    tasks of a run are polled as well as the last ones."""
    from ..executor.learned import DurationModel
    from ..executor.learned import load_durations as load

    return load(state_path, label, DurationModel(policy))


def save_durations(state_path: Path, label: str, model: Any) -> None:
    from ..executor.learned import save_durations as save

    save(state_path, label, model)
