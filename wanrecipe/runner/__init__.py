"""Running a recipe: pick the backend, open the client, run the scheduler, write the record.

The embedded emulator is started here, on 127.0.0.1 port 0 (in a child process of the run),
and from then on it is just another base URL: the client below talks to it over HTTP exactly
as it talks to DashScope.

One module per responsibility: ``choice`` (where requests go), ``embedded`` (the embedded
emulator's process, started early), ``session`` (what a run opens: state dir, backend,
quota gate, client; Ctrl-C), ``records`` (step records, outputs, default directories) and
``execute`` (one recipe's run; ``run_recipe`` and ``run_blocking`` for synchronous callers).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from ..lazy import load_lazily

# Light, and needed before the recipe is checked (where requests go; the embedded emulator's
# process, started first): imported at once. The rest is loaded on first use.
from .choice import LOCAL_API_KEY, BackendChoice, BackendKind, choose_backend, host_of
from .embedded import discard_early, open_backend, start_embedded_early

if TYPE_CHECKING:
    from .execute import execute, run_blocking, run_recipe
    from .records import (
        collect_outputs,
        default_run_dir,
        default_state_dir,
        step_records,
        with_dependants,
    )
    from .session import (
        Session,
        interruptible,
        load_durations,
        open_session,
        save_durations,
        watching_backend,
    )

_HOME = {
    "execute": "execute",
    "run_blocking": "execute",
    "run_recipe": "execute",
    "collect_outputs": "records",
    "default_run_dir": "records",
    "default_state_dir": "records",
    "step_records": "records",
    "with_dependants": "records",
    "Session": "session",
    "interruptible": "session",
    "load_durations": "session",
    "open_session": "session",
    "save_durations": "session",
    "watching_backend": "session",
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _HOME, name)


class _Package(types.ModuleType):
    """``runner.execute`` is the function, as when it was imported eagerly: importing the
    submodule of the same name (``runner/execute.py``) must not bind the module over it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "execute" and isinstance(value, types.ModuleType):
            value = getattr(value, "execute")  # noqa: B009 - the function, not the module
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "LOCAL_API_KEY",
    "BackendChoice",
    "BackendKind",
    "Session",
    "choose_backend",
    "collect_outputs",
    "default_run_dir",
    "default_state_dir",
    "discard_early",
    "execute",
    "host_of",
    "interruptible",
    "load_durations",
    "open_backend",
    "open_session",
    "run_blocking",
    "run_recipe",
    "save_durations",
    "start_embedded_early",
    "step_records",
    "watching_backend",
    "with_dependants",
]
