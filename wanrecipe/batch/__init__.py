"""Batch runs: one recipe over many rows of params, in one scheduler (see docs/batch.md)."""

from __future__ import annotations

from .graph import BatchGraph, LoadedRow, Row, as_rows, derive_key, load_rows_recipes
from .run import execute_batch

__all__ = [
    "BatchGraph",
    "LoadedRow",
    "Row",
    "as_rows",
    "derive_key",
    "execute_batch",
    "load_rows_recipes",
]
