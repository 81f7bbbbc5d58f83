"""Writing the files people keep (run.json, lock files, learned durations) so that a crash
never leaves a torn one: a temporary file beside it, fsynced, then renamed over it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: Path, text: str, *, keep_if_unchanged: bool = False) -> None:
    """Replace ``path`` with ``text`` in one step. With ``keep_if_unchanged`` an identical file
    is left alone (its mtime too: make-style tools and editors stay quiet)."""
    if keep_if_unchanged and path.exists() and path.read_text(encoding="utf-8") == text:
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # backslashreplace: a path from the command line may hold bytes that are not UTF-8
        # (a lone surrogate): the record shows them escaped rather than not being written.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes 0600 files; these are ordinary files of the user's.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
