"""The batch lock file: ``<recipe>.batch.lock`` beside the recipe, one entry per row.

Each row's entry is the ordinary lock of that row's run (``report.lock.build_lock``: seeds,
inputs, outputs, task ids per step) plus its params. Rows that did not finish this time keep
their entry from the last batch lock, so an interrupted batch, or a batch over other rows, does
not forget what earlier batches made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..report.batch_record import BatchRecord
from ..report.files import write_text_atomic
from ..report.lock import LOCK_VERSION, build_lock, dump_lock
from ..store import JournalOps as Journal
from .graph import BatchGraph


def batch_lock_path(recipe_path: Path) -> Path:
    """``recipes/old-photo.yaml`` -> ``recipes/old-photo.batch.lock``."""
    return Path(recipe_path).with_suffix(".batch.lock")


def build_batch_lock(
    graph: BatchGraph, record: BatchRecord, journal: Journal, previous: dict[str, Any]
) -> dict[str, Any]:
    rows: dict[str, Any] = dict(previous)
    for row in record.rows:
        loaded = graph.by_key.get(row.key)
        if loaded is None or row.record is None:
            continue
        if not any(s.state in ("done", "cached") for s in row.record.steps.values()):
            continue
        document = build_lock(loaded.recipe, row.record, journal)
        rows[row.key] = {
            "params": {k: v for k, v in sorted(document.get("params", {}).items())},
            "images": document.get("images", 0),
            "cost_usd": document.get("cost_usd", "0"),
            "steps": document.get("steps", {}),
        }
    first = graph.rows[0].recipe
    return {
        "version": LOCK_VERSION,
        "kind": "batch",
        "recipe": first.name,
        "rows": {key: rows[key] for key in sorted(rows)},
    }


def read_previous(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        return {}
    rows = data.get("rows")
    return dict(rows) if isinstance(rows, dict) else {}


def write_batch_lock(graph: BatchGraph, record: BatchRecord, journal: Journal) -> Path | None:
    """Write ``<recipe>.batch.lock`` when at least one row finished a step; returns its path."""
    if not any(
        r.record is not None and any(s.state in ("done", "cached") for s in r.record.steps.values())
        for r in record.rows
    ):
        return None
    path = batch_lock_path(graph.path)
    document = build_batch_lock(graph, record, journal, read_previous(path))
    write_text_atomic(path, dump_lock(document, graph.path.name), keep_if_unchanged=True)
    return path
