"""The end of ``run`` (single and batch): the lock file, the summary, the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ..errors import WanRecipeError
from .common import shown_path


def lock_summary_exit(
    err: Any,
    state_path: str | Path | None,
    write_lock: Callable[[Any], Path | None],
    *,
    as_json: bool,
    summary: Callable[[], None],
    code: int,
    default_dir: Path,
    blobs: str | None = None,
    show: Callable[[Path], str] = shown_path,
) -> NoReturn:
    """Write the lock file from the journal (``write_lock(journal)``), print the summary
    (not with ``--json``) and the lock file's name, and exit with ``code``.

    The images are stored and the run record written by now: a lock file that cannot be
    written is a warning, not a failure."""
    from rich.markup import escape

    from ..store import open_state

    lock: Path | None
    try:
        with open_state(state_path, default_dir=default_dir, blobs=blobs) as opened:
            lock = write_lock(opened.journal)
    except (WanRecipeError, OSError) as exc:
        lock = None
        err.print(f"[yellow]warning[/]: the lock file was not written: {escape(str(exc))}")
    if not as_json:
        summary()
        if lock is not None:
            err.print(f"lock file {escape(show(lock))}")
    sys.exit(code)
