"""The batch run record: ``run.json`` with ``"kind": "batch"`` at the top of a batch run
directory, one entry per row; each row's own ``<row key>/run.json`` is an ordinary run record.

The contract (shared with the HTML report): ``version, kind, recipe, name, backend, started,
finished, elapsed_s, status ("ok"|"failed"|"interrupted"|"budget"), images_billed, cost_usd
(string), warnings, rows: [{key, index, params, status ("ok"|"failed"|"skipped"|
"interrupted"), dir, outputs {name: [paths relative to the batch dir]}, images_billed,
cost_usd, error}]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from .. import wire
from .files import write_text_atomic
from .record import RECORD_VERSION, RunRecord

BatchStatus = Literal["running", "ok", "failed", "interrupted", "budget"]
RowStatus = Literal["ok", "failed", "skipped", "interrupted"]


@dataclass
class RowRecord:
    key: str
    index: int
    params: dict[str, Any]
    status: RowStatus
    dir: str  # relative to the batch directory
    outputs: dict[str, list[str]] = field(default_factory=dict)  # paths relative to the batch
    images_billed: int = 0
    error: str | None = None
    #: The row's own record (``<dir>/run.json``); not part of the batch file.
    record: RunRecord | None = field(default=None, repr=False, compare=False)

    @property
    def cost_usd(self) -> Decimal:
        return wire.PRICE_PER_IMAGE_USD * self.images_billed

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "index": self.index,
            "params": self.params,
            "status": self.status,
            "dir": self.dir,
            "outputs": self.outputs,
            "images_billed": self.images_billed,
            "cost_usd": str(self.cost_usd),
            "error": self.error,
        }


@dataclass
class BatchRecord:
    recipe: str
    name: str
    backend: str
    run_dir: str
    started: str
    rows: list[RowRecord] = field(default_factory=list)
    finished: str | None = None
    elapsed_s: float | None = None
    status: BatchStatus = "running"
    warnings: list[str] = field(default_factory=list)
    #: What the rows not done would still bill (a budget or an interrupt stopped them).
    left_images: int = 0
    #: Rows of the batch no process finished (team mode: across every worker); None: the
    #: rows of this record that are skipped or interrupted.
    left_rows: int | None = None
    version: int = RECORD_VERSION
    kind: Literal["batch"] = "batch"

    @property
    def images_billed(self) -> int:
        return sum(r.images_billed for r in self.rows)

    @property
    def cost_usd(self) -> Decimal:
        return wire.PRICE_PER_IMAGE_USD * self.images_billed

    @property
    def left_usd(self) -> Decimal:
        return wire.PRICE_PER_IMAGE_USD * self.left_images

    @property
    def paid(self) -> bool:
        """Money was spent: the backend is DashScope itself (the emulator bills nothing)."""
        return self.backend.startswith("dashscope")

    def count(self, status: RowStatus) -> int:
        return sum(1 for r in self.rows if r.status == status)

    def finished_data(self) -> dict[str, Any]:
        """The `run_finished` event's data for the batch: status, row counts, cost, what is left."""
        return {
            "kind": "batch",
            "status": self.status,
            "rows": len(self.rows),
            "rows_ok": self.count("ok"),
            "rows_failed": self.count("failed"),
            "images": self.images_billed,
            "cost_usd": str(self.cost_usd),
            "left_images": self.left_images,
            "left_usd": str(self.left_usd),
        }

    def row(self, key: str) -> RowRecord:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "recipe": self.recipe,
            "name": self.name,
            "backend": self.backend,
            "started": self.started,
            "finished": self.finished,
            "elapsed_s": self.elapsed_s,
            "status": self.status,
            "images_billed": self.images_billed,
            "cost_usd": str(self.cost_usd),
            "left_images": self.left_images,
            "left_usd": str(self.left_usd),
            "warnings": self.warnings,
            "rows": [r.to_json() for r in self.rows],
        }

    def write(self, path: Path) -> None:
        text = json.dumps(self.to_json(), indent=2, ensure_ascii=False, default=str) + "\n"
        write_text_atomic(path, text)
