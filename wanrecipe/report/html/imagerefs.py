"""Where a page's images come from: a step's results, another step's output used as an input,
a local file, or a URL that is only named. Links are relative to the page's directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...redact import redact_text, redact_url
from .recipe_info import InputRef
from .thumbs import FIDELITIES, png_labels, thumbnail
from .views import ImageView, StepView

#: An input that is another step's output is shown smaller: its full thumbnail is at that step.
INPUT_SIDE = 160


def fidelity_of(label: str | None, emulator: bool) -> str | None:
    if label in FIDELITIES:
        return label
    # An emulator image without a label could be anything: never shown as a real edit.
    return "unlabelled" if emulator else None


def step_inputs(
    run_dir: Path,
    s: dict[str, Any],
    rendered: Any,
    steps: dict[str, StepView],
    by_url: dict[str, tuple[str, int]],
) -> list[ImageView]:
    request = (s.get("attempts") or [{}])[-1].get("request") or {}
    given = request.get("input") or {}
    out: list[ImageView] = []
    for field_name, label in (("base_image_url", "image"), ("mask_image_url", "mask")):
        shown = given.get(field_name)
        ref: InputRef | None = getattr(rendered, label, None) if rendered is not None else None
        if isinstance(shown, str) and shown:
            out.append(_input_from_shown(run_dir, label, shown, ref, steps, by_url))
        elif ref is not None:
            out.append(_input_from_ref(run_dir, label, ref, steps))
    return out


def _input_from_shown(
    run_dir: Path,
    label: str,
    shown: str,
    ref: InputRef | None,
    steps: dict[str, StepView],
    by_url: dict[str, tuple[str, int]],
) -> ImageView:
    hit = by_url.get(strip_query(shown))
    if hit is not None:
        return step_output(label, hit[0], hit[1], steps)
    source = shown
    for suffix in (" (data URI)", " (uploaded as "):
        if suffix in source:
            source = source.split(suffix, 1)[0]
    if source.startswith("steps."):
        sid = source[len("steps.") :]
        index = ref.index if ref is not None and ref.step == sid else 0
        return step_output(label, sid, index, steps)
    if source.startswith(("http://", "https://", "oss://", "data:")):
        return ImageView(label, redact_url(source))
    return _local_view(run_dir, label, Path(source))


def _input_from_ref(
    run_dir: Path, label: str, ref: InputRef, steps: dict[str, StepView]
) -> ImageView:
    if ref.step is not None:
        return step_output(label, ref.step, ref.index, steps)
    if ref.path is not None:
        return _local_view(run_dir, label, ref.path)
    return ImageView(label, redact_url(ref.text) if "://" in ref.text else ref.text)


def step_output(
    label: str, sid: str, index: int, steps: dict[str, StepView], side: int = INPUT_SIDE
) -> ImageView:
    """Another step's output, shown again (as an input or a recipe output): at ``side`` px, as
    the full-size thumbnail is already on the page at the step that made it."""
    upstream = steps.get(sid)
    if upstream is not None and index < len(upstream.outputs):
        made = upstream.outputs[index]
        thumb = made.thumb
        if thumb is not None and made.path is not None and side < max(thumb.width, thumb.height):
            thumb = thumbnail(made.path, side) or thumb
        return ImageView(
            label,
            f"steps.{sid}" + (f".images[{index}]" if len(upstream.outputs) > 1 else ".image"),
            made.href,
            thumb,
            sid,
            made.fidelity,
            made.engine,
            made.note,
            made.width,
            made.height,
            made.path,
        )
    return ImageView(label, f"steps.{sid} (no image)", step=sid)


def _local_view(run_dir: Path, label: str, path: Path) -> ImageView:
    view = ImageView(label, str(path))
    if not path.is_absolute():
        return view  # relative to a working directory we do not know
    thumb = thumbnail(path)
    if thumb is None:
        return view
    view.thumb, view.path = thumb, path
    view.width, view.height = thumb.full_width, thumb.full_height
    view.href = href(os.path.relpath(path, run_dir))
    return view


def file_view(run_dir: Path, rel: str, label: str, side: int) -> ImageView:
    view = ImageView(label, rel)
    path = run_dir / rel
    if rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
        thumb = thumbnail(path, side)
        if thumb is not None:
            view.thumb, view.path, view.href = thumb, path, href(rel)
            view.width, view.height = thumb.full_width, thumb.full_height
    return view


def output_ref(run_dir: Path, shown: str, steps: dict[str, StepView], side: int) -> ImageView:
    """A recipe output (a path the runner wrote, relative to the working directory then): the
    step output with the same file name, else just the text."""
    name = Path(shown).name
    for step in steps.values():
        for out in step.outputs:
            if out.path is not None and out.path.name == name:
                index = step.outputs.index(out)
                return step_output("output", step.id, index, steps, side)
    return ImageView("output", redact_text(shown))


def output_views(run_dir: Path, paths: list[str], side: int, emulator: bool) -> list[ImageView]:
    """Thumbnails for paths relative to ``run_dir`` (a batch row's outputs), with the engine
    labels their files carry."""
    views = [file_view(run_dir, p, Path(p).name, side) for p in paths]
    for view in views:
        labels = png_labels(view.path) if view.path is not None else {}
        view.fidelity = fidelity_of(labels.get("fidelity"), emulator)
        view.engine, view.note = labels.get("engine"), labels.get("note")
    return views


def strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def href(rel: str) -> str:
    return quote(rel.replace(os.sep, "/"))
