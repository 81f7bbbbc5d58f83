"""Running a recipe: pick the backend, open the client, run the scheduler, write the record.

The embedded emulator is started here, in-process on 127.0.0.1 port 0, and from then on it is
just another base URL: the client below talks to it over HTTP exactly as it talks to DashScope.

One module per responsibility: ``choice`` (where requests go), ``embedded`` (the embedded
emulator and its early engine workers), ``session`` (what a run opens: state dir, backend,
quota gate, client; Ctrl-C), ``records`` (step records, outputs, default directories) and
``execute`` (one recipe's run; ``run_recipe`` and ``run_blocking`` for synchronous callers).
"""

from __future__ import annotations

from .choice import LOCAL_API_KEY, BackendChoice, BackendKind, choose_backend, host_of
from .embedded import open_backend, start_engines_early
from .execute import execute, run_blocking, run_recipe
from .records import (
    collect_outputs,
    default_run_dir,
    default_state_dir,
    step_records,
    with_dependants,
)
from .session import Session, interruptible, load_durations, open_session, save_durations

__all__ = [
    "LOCAL_API_KEY",
    "BackendChoice",
    "BackendKind",
    "Session",
    "choose_backend",
    "collect_outputs",
    "default_run_dir",
    "default_state_dir",
    "execute",
    "host_of",
    "interruptible",
    "load_durations",
    "open_backend",
    "open_session",
    "run_blocking",
    "run_recipe",
    "save_durations",
    "start_engines_early",
    "step_records",
    "with_dependants",
]
