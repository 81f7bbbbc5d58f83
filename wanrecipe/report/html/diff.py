"""The comparison page of two runs: changed params, prompts, parameters and seeds highlighted,
outputs side by side with a pixel-difference thumbnail where both runs have the image."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UsageError
from .imagerefs import href
from .model import build_run_view, read_record
from .page import render, write_page
from .thumbs import PixelDiff, pixel_diff
from .views import ImageView, RunView, StepView

_MISSING = object()


@dataclass
class Change:
    name: str
    a: Any
    b: Any

    @property
    def changed(self) -> bool:
        return bool(self.a != self.b)

    @property
    def a_missing(self) -> bool:
        return self.a is _MISSING

    @property
    def b_missing(self) -> bool:
        return self.b is _MISSING


@dataclass
class OutputPair:
    index: int
    a: ImageView | None
    b: ImageView | None
    diff: PixelDiff | None

    @property
    def identical(self) -> bool:
        return bool(self.a and self.b and self.a.path and self.b.path and _same(self.a, self.b))


@dataclass
class StepDiff:
    id: str
    a: StepView | None
    b: StepView | None
    prompt_a: str | None
    prompt_b: str | None
    prompt_segments: list[tuple[str, str]]
    parameters: list[Change] = field(default_factory=list)
    outputs: list[OutputPair] = field(default_factory=list)

    @property
    def prompt_changed(self) -> bool:
        return self.prompt_a != self.prompt_b

    @property
    def changed(self) -> bool:
        return (
            self.a is None
            or self.b is None
            or self.prompt_changed
            or any(c.changed for c in self.parameters)
            or self.a.function != self.b.function
            or any(not o.identical for o in self.outputs)
        )


@dataclass
class DiffView:
    a: RunView
    b: RunView
    a_label: str  # the run directories as given
    b_label: str
    a_href: str  # their reports, relative to the diff page
    b_href: str
    params: list[Change]
    steps: list[StepDiff]

    @property
    def changed_steps(self) -> int:
        return sum(1 for s in self.steps if s.changed)


def write_diff_page(run_a: Path, run_b: Path, out: Path | None) -> Path:
    for run in (run_a, run_b):
        if read_record(run).get("kind") == "batch":
            raise UsageError(
                f"{run}: a batch directory; compare two rows instead "
                f"(wanrecipe diff {run}/<row key> ...)"
            )
    from . import write_report

    for run in (run_a, run_b):
        if not (run / "report.html").exists():
            write_report(run)  # the diff links to both runs' pages
    out = out or run_b / f"diff-{_slug(run_a.resolve().name)}.html"
    if out.is_dir():
        out = out / f"diff-{_slug(run_a.resolve().name)}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    view = build_diff(run_a, run_b, out.parent)
    text = render(
        "diff.html.j2",
        "diff",
        d=view,
        page_data={"changed_steps": view.changed_steps, "steps": len(view.steps)},
    )
    return write_page(out, text)


def build_diff(run_a: Path, run_b: Path, page_dir: Path) -> DiffView:
    a = build_run_view(run_a, read_record(run_a))
    b = build_run_view(run_b, read_record(run_b))
    for view in (a, b):
        _relink(view, page_dir)
    params = _changes(a.params, b.params)
    ids = [s.id for s in a.steps] + [s.id for s in b.steps if s.id not in {x.id for x in a.steps}]
    by_a = {s.id: s for s in a.steps}
    by_b = {s.id: s for s in b.steps}
    steps = [_step_diff(sid, by_a.get(sid), by_b.get(sid)) for sid in ids]
    return DiffView(
        a, b, str(run_a), str(run_b), _reporthref(run_a, page_dir), _reporthref(run_b, page_dir),
        params, steps,
    )  # fmt: skip


def _step_diff(sid: str, a: StepView | None, b: StepView | None) -> StepDiff:
    pa = a.prompt if a else None
    pb = b.prompt if b else None
    params = _changes(a.parameters if a else {}, b.parameters if b else {})
    outs: list[OutputPair] = []
    count = max(len(a.outputs) if a else 0, len(b.outputs) if b else 0)
    for i in range(count):
        oa = a.outputs[i] if a and i < len(a.outputs) else None
        ob = b.outputs[i] if b and i < len(b.outputs) else None
        diff = pixel_diff(oa.path, ob.path) if oa and ob and oa.path and ob.path else None
        outs.append(OutputPair(i, oa, ob, diff))
    return StepDiff(sid, a, b, pa, pb, word_diff(pa or "", pb or ""), params, outs)


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    names = list(a) + [k for k in b if k not in a]
    return [Change(n, a.get(n, _MISSING), b.get(n, _MISSING)) for n in names]


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """(op, text) segments turning ``a`` into ``b``: op is ``same``, ``del`` or ``ins``."""
    ta, tb = re.findall(r"\s+|[^\s]+", a), re.findall(r"\s+|[^\s]+", b)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", "".join(ta[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", "".join(ta[i1:i2])))
        if j2 > j1:
            out.append(("ins", "".join(tb[j1:j2])))
    return out


def _relink(view: RunView, page_dir: Path) -> None:
    """Point every image link at the file from where the diff page is."""
    images = [i for s in view.steps for i in (*s.inputs, *s.outputs)]
    images += [i for _, imgs in view.outputs for i in imgs]
    for img in images:
        if img.path is not None:
            img.href = href(os.path.relpath(img.path.resolve(), page_dir.resolve()))


def _same(a: ImageView, b: ImageView) -> bool:
    assert a.path and b.path
    try:
        if a.path.stat().st_size != b.path.stat().st_size:
            return False
        return a.path.read_bytes() == b.path.read_bytes()
    except OSError:
        return False


def _reporthref(run: Path, page_dir: Path) -> str:
    return href(os.path.relpath(run.resolve() / "report.html", page_dir.resolve()))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
