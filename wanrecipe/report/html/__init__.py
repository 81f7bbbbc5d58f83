"""The HTML report: ``report.html`` in a run (or batch) directory, and the diff of two runs.

``write_report(run_dir)`` rebuilds the page from ``run.json`` and the files beside it; for a
batch it writes every row's page and the grid. Pages are self-contained (inline CSS, JS and
JPEG thumbnails; full-size images are relative links) and safe to open from ``file://``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...errors import UsageError
from .batch import build_batch_view, param_columns, row_dirs, shown
from .model import build_run_view, read_record
from .page import REPORT_NAME, render, write_page
from .svg import dag_svg

__all__ = ["REPORT_NAME", "write_diff", "write_report"]


def write_report(run_dir: str | os.PathLike[str], *, recipe: object = None) -> Path:
    """Write ``report.html`` into ``run_dir`` from its ``run.json``; return its path.

    Raises UsageError when there is no readable run record. A batch directory (``"kind":
    "batch"``) gets the grid, and each row directory its own page. ``recipe``: a single
    run's recipe as it ran, when the caller has it (else it is read from its file again).
    """
    root = Path(run_dir)
    data = read_record(root)
    try:
        if data.get("kind") == "batch":
            return _write_batch(root, data)
        return _write_run(root, data, _batch_of(root), recipe=recipe)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # A record edited by hand or written by another version: say which, not a traceback.
        raise UsageError(
            f"{root / 'run.json'}: not a run record this version can read "
            f"({type(exc).__name__}: {exc}); rerun the recipe to rewrite it"
        ) from exc


def _batch_of(row_dir: Path) -> dict[str, str] | None:
    """The back link of a batch row's page rebuilt on its own: the batch one level up."""
    parent = row_dir.resolve().parent
    try:
        batch = read_record(parent)
    except UsageError:
        return None
    if batch.get("kind") != "batch":
        return None
    if row_dir.resolve() not in {d.resolve() for d in row_dirs(parent, batch)}:
        return None
    return _back(parent, row_dir, str(batch.get("name", parent.name)))


def _back(batch_dir: Path, row_dir: Path, name: str) -> dict[str, str]:
    rel = os.path.relpath(batch_dir.resolve() / REPORT_NAME, row_dir.resolve())
    return {"href": rel.replace(os.sep, "/"), "text": f"batch {name}"}


def _write_run(
    run_dir: Path,
    data: dict[str, object],
    back: dict[str, str] | None = None,
    *,
    recipe: object = None,
) -> Path:
    view = build_run_view(run_dir, data, recipe=recipe)
    dag = dag_svg(
        view.levels,
        view.edges,
        {s.id: s.state for s in view.steps},
        {s.id: s.function for s in view.steps},
        {s.id: f"step-{s.id}" for s in view.steps},
    )
    text = render(
        "run.html.j2",
        "run",
        run=view,
        dag=dag,
        back=back,
        page_data={"status": view.status, "steps": [s.id for s in view.steps]},
    )
    return write_page(run_dir / REPORT_NAME, text)


def _write_batch(batch_dir: Path, data: dict[str, object]) -> Path:
    dirs = row_dirs(batch_dir, data)
    name = str(data.get("name", batch_dir.name))

    def one(row_dir: Path) -> Path:
        return _write_run(row_dir, read_record(row_dir), _back(batch_dir, row_dir, name))

    # Thumbnails are CPU work that Pillow does without the GIL: one thread per core.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(one, dirs))
    view = build_batch_view(batch_dir, data)
    text = render(
        "batch.html.j2",
        "batch",
        batch=view,
        columns=param_columns(view),
        shown=shown,
        page_data={"status": view.status, "rows": len(view.rows)},
    )
    return write_page(batch_dir / REPORT_NAME, text)


def write_diff(
    run_a: str | os.PathLike[str],
    run_b: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a page comparing two runs (default ``RUN_B/diff-<RUN_A's dir name>.html``)."""
    from .diff import write_diff_page

    return write_diff_page(Path(run_a), Path(run_b), Path(out) if out is not None else None)
