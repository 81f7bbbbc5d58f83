"""The batch page: one grid row per batch row (key, status, final outputs, cost), each linking
to the row's own report, built to stay usable with hundreds of rows (small lazy thumbnails, a
filter box)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...redact import redact_text, redact_url
from .imagerefs import output_views
from .model import money, param_value
from .page import REPORT_NAME
from .thumbs import GRID_SIDE
from .views import ImageView


@dataclass
class RowView:
    key: str
    index: int
    status: str
    params: dict[str, Any]
    href: str | None  # the row's report, relative to the batch page
    outputs: list[ImageView] = field(default_factory=list)
    images_billed: int = 0
    cost_usd: str = "0.0000"
    error: str | None = None

    @property
    def filter_text(self) -> str:
        values = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.key} {self.status} {values} {self.error or ''}".lower()


@dataclass
class BatchView:
    name: str
    recipe: str
    backend: str
    status: str
    started: str
    finished: str | None
    elapsed_s: float | None
    images_billed: int
    cost_usd: str
    warnings: list[str]
    rows: list[RowView]

    @property
    def emulator(self) -> bool:
        return not self.backend.startswith("dashscope")

    @property
    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts


def row_dirs(batch_dir: Path, data: dict[str, Any]) -> list[Path]:
    """The row directories that hold a run record, inside the batch directory only."""
    found: list[Path] = []
    for row in data.get("rows") or []:
        rel = str(row.get("dir") or "")
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            continue
        if (batch_dir / rel / "run.json").is_file():
            found.append(batch_dir / rel)
    return found


def build_batch_view(batch_dir: Path, data: dict[str, Any]) -> BatchView:
    rows: list[RowView] = []
    emulator = not str(data.get("backend", "")).startswith("dashscope")
    for row in data.get("rows") or []:
        rel = str(row.get("dir") or "")
        safe = rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts
        page = batch_dir / rel / REPORT_NAME if safe else None
        href = quote(f"{rel.replace(os.sep, '/')}/{REPORT_NAME}") if page else None
        paths = [p for ps in (row.get("outputs") or {}).values() for p in ps]
        rows.append(
            RowView(
                key=str(row.get("key", "")),
                index=int(row.get("index") or 0),
                status=str(row.get("status", "unknown")),
                params={k: param_value(v) for k, v in (row.get("params") or {}).items()},
                href=href,
                outputs=output_views(batch_dir, [str(p) for p in paths], GRID_SIDE, emulator),
                images_billed=int(row.get("images_billed") or 0),
                cost_usd=money(row.get("cost_usd")),
                error=redact_text(str(row["error"])) if row.get("error") else None,
            )
        )
    return BatchView(
        name=str(data.get("name", batch_dir.name)),
        recipe=str(data.get("recipe", "")),
        backend=str(data.get("backend", "")),
        status=str(data.get("status", "unknown")),
        started=str(data.get("started", "")),
        finished=data.get("finished"),
        elapsed_s=data.get("elapsed_s"),
        images_billed=int(data.get("images_billed") or 0),
        cost_usd=money(data.get("cost_usd")),
        warnings=[redact_text(str(w)) for w in data.get("warnings") or []],
        rows=rows,
    )


def param_columns(view: BatchView) -> list[str]:
    """The params that differ between rows (the ones worth a column), in first-seen order."""
    seen: dict[str, set[str]] = {}
    for row in view.rows:
        for k, v in row.params.items():
            seen.setdefault(k, set()).add(repr(v))
    many = [k for k, values in seen.items() if len(values) > 1]
    return many or list(seen)[:3]


def shown(value: object) -> str:
    text = str(value)
    return redact_url(text) if text.startswith("data:") else text
