"""A recipe's ``name`` as a directory name: it must never steer a path.

The default run directory is ``runs/<name>/<timestamp>``. A name such as ``../escaped``, an
absolute path, or one with separators, NUL bytes or control characters is turned into one
plain directory name, and ``validate`` warns that it was.
"""

from __future__ import annotations

import re

MAX_NAME_CHARS = 100
_FALLBACK = "recipe"
_RUNS = re.compile(r"-{2,}")


def run_dir_name(name: str) -> str:
    """One path component made from ``name``: letters, digits, ``.``, ``_`` and ``-`` kept,
    anything else (``/``, ``\\``, ``:``, spaces, control characters) becomes ``-``; no leading
    dot (so never ``.`` or ``..``)."""
    kept = "".join(c if (c.isalnum() or c in "._-") and c.isprintable() else "-" for c in name)
    kept = _RUNS.sub("-", kept).strip("-. ")
    kept = kept[:MAX_NAME_CHARS].rstrip("-. ")
    return kept or _FALLBACK


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a directory name as written, or None."""
    safe = run_dir_name(name)
    if safe == name:
        return None
    shown = name if name.isprintable() else ascii(name)
    return f"{shown!r} is not a plain directory name; the default run directory uses {safe!r}"
