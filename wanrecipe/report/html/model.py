"""A run's ``run.json`` turned into what its report page shows.

Everything comes from the record and the files in the run directory; the recipe file, when it
is still there and still has the run's steps, adds the description, ``needs:`` edges and the
prompt of a step that came from the store (see ``recipe_info``). Links are relative to the page,
so the folder can be zipped or opened from ``file://``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ... import wire
from ...errors import UsageError
from ...recipe.dag import CycleError, Graph
from ...redact import redact_text, redact_url
from .recipe_info import InputRef, RecipeInfo, recipe_info
from .thumbs import FIDELITIES, MAX_SIDE, Thumb, png_labels, thumbnail

#: An input that is another step's output is shown smaller: its full thumbnail is at that step.
INPUT_SIDE = 160


@dataclass
class ImageView:
    label: str
    origin: str  # where it came from, as text
    href: str | None = None  # relative to the page; None when there is no file to open
    thumb: Thumb | None = None
    step: str | None = None  # the step that made it, for an anchor link
    fidelity: str | None = None  # real | approximate | placeholder | unlabelled | None
    engine: str | None = None
    note: str | None = None
    width: int = 0
    height: int = 0
    path: Path | None = None  # the file itself (for diffs), not shown


@dataclass
class AttemptView:
    number: int
    task_id: str | None
    status: str | None
    submit_time: str | None
    scheduled_time: str | None
    end_time: str | None
    submitted_at: float | None
    noticed_at: float | None
    queries: int
    reattached: bool
    usage_images: int
    error: dict[str, Any] | None


@dataclass
class StepView:
    id: str
    function: str
    state: str
    description: str = ""
    level: int = 0
    deps: tuple[str, ...] = ()
    inputs: list[ImageView] = field(default_factory=list)
    outputs: list[ImageView] = field(default_factory=list)
    prompt: str | None = None
    prompt_from_recipe: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    key: str | None = None
    cached_from: str | None = None
    images_billed: int = 0
    cost_usd: str = "0"
    error: dict[str, Any] | None = None
    failed_outputs: list[dict[str, Any]] = field(default_factory=list)
    skipped_because: str | None = None
    attempts: list[AttemptView] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def cached(self) -> bool:
        return self.state == "cached"

    @property
    def task_id(self) -> str | None:
        for attempt in reversed(self.attempts):
            if attempt.task_id:
                return attempt.task_id
        return self.cached_from

    @property
    def fidelity(self) -> str | None:
        """The least faithful label of its outputs: one placeholder marks the step."""
        found = [o.fidelity for o in self.outputs if o.fidelity]
        for label in ("placeholder", "unlabelled", "approximate", "real"):
            if label in found:
                return label
        return None


@dataclass
class RunView:
    name: str
    recipe: str
    description: str
    params: dict[str, Any]
    backend: str
    base_url: str
    status: str
    started: str
    finished: str | None
    elapsed_s: float | None
    steps: list[StepView]
    levels: list[list[str]]
    edges: list[tuple[str, str]]
    outputs: list[tuple[str, list[ImageView]]]
    warnings: list[str]
    images_billed: int
    cost_usd: str
    run_dir: Path

    @property
    def emulator(self) -> bool:
        return not self.backend.startswith("dashscope")

    @property
    def tasks(self) -> int:
        return sum(1 for s in self.steps for a in s.attempts if a.task_id)

    @property
    def images_out(self) -> int:
        return sum(len(s.outputs) for s in self.steps)

    @property
    def cache_hits(self) -> int:
        return sum(1 for s in self.steps if s.cached)

    @property
    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.steps:
            counts[s.state] = counts.get(s.state, 0) + 1
        return counts

    @property
    def placeholders(self) -> int:
        return sum(1 for s in self.steps for o in s.outputs if o.fidelity == "placeholder")


def read_record(run_dir: Path) -> dict[str, Any]:
    """``run_dir/run.json`` as data. Raises UsageError naming the file and what is wrong."""
    path = run_dir / "run.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no run record here (is {run_dir} a run directory?)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); rerun the recipe to rewrite it"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("steps", {}), dict):
        raise UsageError(f"{path}:1: not a wanrecipe run record (no steps mapping)")
    return data


def build_run_view(run_dir: Path, data: dict[str, Any], *, side: int = MAX_SIDE) -> RunView:
    """The page's view of one run; ``run_dir`` is where ``run.json`` and the images are, which
    is also where the page goes."""
    steps_data: dict[str, Any] = data.get("steps") or {}
    ids = list(steps_data)
    info = recipe_info(str(data.get("recipe", "")), dict(data.get("params") or {}), ids)
    results_by_url: dict[str, tuple[str, int]] = {}
    for sid, s in steps_data.items():
        for r in s.get("results") or []:
            if r.get("url"):
                results_by_url[_strip_query(r["url"])] = (sid, int(r.get("index", 0)))
    backend = str(data.get("backend", ""))
    emulator = not backend.startswith("dashscope")
    steps: dict[str, StepView] = {}
    for sid, s in steps_data.items():
        steps[sid] = _step_view(run_dir, sid, s, info, emulator, side)
    for sid, s in steps_data.items():
        steps[sid].inputs = _inputs(run_dir, s, info.rendered.get(sid), steps, results_by_url)
    deps = {sid: set(info.deps.get(sid, ())) for sid in ids}
    for sid, view in steps.items():
        deps[sid].update(i.step for i in view.inputs if i.step in steps and i.step != sid)
    graph_levels, edges = _graph(ids, deps)
    for n, level in enumerate(graph_levels):
        for sid in level:
            steps[sid].level = n
            steps[sid].deps = tuple(d for d, t in edges if t == sid)
    outputs = [
        (name, [_output_ref(run_dir, p, steps, side) for p in paths])
        for name, paths in (data.get("outputs") or {}).items()
    ]
    return RunView(
        name=str(data.get("name", run_dir.name)),
        recipe=str(data.get("recipe", "")),
        description=info.description,
        params={k: _param(v) for k, v in (data.get("params") or {}).items()},
        backend=backend,
        base_url=redact_url(str(data.get("base_url") or "")) if data.get("base_url") else "",
        status=str(data.get("status", "unknown")),
        started=str(data.get("started", "")),
        finished=data.get("finished"),
        elapsed_s=data.get("elapsed_s"),
        steps=[steps[sid] for sid in ids],
        levels=[list(level) for level in graph_levels],
        edges=edges,
        outputs=outputs,
        warnings=[redact_text(str(w)) for w in data.get("warnings") or []],
        images_billed=int(data.get("images_billed") or 0),
        cost_usd=_money(data.get("cost_usd")),
        run_dir=run_dir,
    )


def _step_view(
    run_dir: Path, sid: str, s: dict[str, Any], info: RecipeInfo, emulator: bool, side: int
) -> StepView:
    attempts = [_attempt(a) for a in s.get("attempts") or []]
    request = (s.get("attempts") or [{}])[-1].get("request") or {}
    prompt = (request.get("input") or {}).get("prompt")
    parameters = dict(request.get("parameters") or {})
    from_recipe = False
    rendered = info.rendered.get(sid)
    if prompt is None and rendered is not None:
        prompt, from_recipe = rendered.prompt, True
        parameters = dict(rendered.parameters)
    if s.get("seed") is not None:
        parameters.setdefault("seed", s["seed"])
    view = StepView(
        id=sid,
        function=str(s.get("function", "")),
        state=str(s.get("state", "waiting")),
        description=info.step_descriptions.get(sid, ""),
        prompt=redact_text(prompt) if isinstance(prompt, str) else None,
        prompt_from_recipe=from_recipe,
        parameters={k: _param(v) for k, v in parameters.items()},
        seed=s.get("seed"),
        key=s.get("key"),
        cached_from=s.get("cached_from"),
        images_billed=int(s.get("images_billed") or 0),
        cost_usd=_money(s.get("cost_usd")),
        error=_error(s.get("error")),
        failed_outputs=[e for e in (_error(x) for x in s.get("failed_outputs") or []) if e],
        skipped_because=s.get("skipped_because"),
        attempts=attempts,
        started_at=s.get("started_at"),
        finished_at=s.get("finished_at"),
    )
    for r in s.get("results") or []:
        index = int(r.get("index", 0))
        img = _file_view(run_dir, str(r.get("path", "")), f"output {index + 1}", side)
        labels = {k: r[k] for k in ("fidelity", "engine", "note") if r.get(k)}
        if not labels and img.path is not None:
            labels = png_labels(img.path)
        img.fidelity = _fidelity(labels.get("fidelity"), emulator)
        img.engine, img.note = labels.get("engine"), labels.get("note")
        img.width = img.width or int(r.get("width") or 0)
        img.height = img.height or int(r.get("height") or 0)
        view.outputs.append(img)
    return view


def _fidelity(label: str | None, emulator: bool) -> str | None:
    if label in FIDELITIES:
        return label
    # An emulator image without a label could be anything: never shown as a real edit.
    return "unlabelled" if emulator else None


def _inputs(
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
    hit = by_url.get(_strip_query(shown))
    if hit is not None:
        return _step_output(label, hit[0], hit[1], steps)
    source = shown
    for suffix in (" (data URI)", " (uploaded as "):
        if suffix in source:
            source = source.split(suffix, 1)[0]
    if source.startswith("steps."):
        sid = source[len("steps.") :]
        index = ref.index if ref is not None and ref.step == sid else 0
        return _step_output(label, sid, index, steps)
    if source.startswith(("http://", "https://", "oss://", "data:")):
        return ImageView(label, redact_url(source))
    return _local_view(run_dir, label, Path(source))


def _input_from_ref(
    run_dir: Path, label: str, ref: InputRef, steps: dict[str, StepView]
) -> ImageView:
    if ref.step is not None:
        return _step_output(label, ref.step, ref.index, steps)
    if ref.path is not None:
        return _local_view(run_dir, label, ref.path)
    return ImageView(label, redact_url(ref.text) if "://" in ref.text else ref.text)


def _step_output(
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
    view.href = _href(os.path.relpath(path, run_dir))
    return view


def _file_view(run_dir: Path, rel: str, label: str, side: int) -> ImageView:
    view = ImageView(label, rel)
    path = run_dir / rel
    if rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
        thumb = thumbnail(path, side)
        if thumb is not None:
            view.thumb, view.path, view.href = thumb, path, _href(rel)
            view.width, view.height = thumb.full_width, thumb.full_height
    return view


def _output_ref(run_dir: Path, shown: str, steps: dict[str, StepView], side: int) -> ImageView:
    """A recipe output (a path the runner wrote, relative to the working directory then): the
    step output with the same file name, else just the text."""
    name = Path(shown).name
    for step in steps.values():
        for out in step.outputs:
            if out.path is not None and out.path.name == name:
                index = step.outputs.index(out)
                return _step_output("output", step.id, index, steps, side)
    return ImageView("output", redact_text(shown))


def output_views(run_dir: Path, paths: list[str], side: int, emulator: bool) -> list[ImageView]:
    """Thumbnails for paths relative to ``run_dir`` (a batch row's outputs), with the engine
    labels their files carry."""
    views = [_file_view(run_dir, p, Path(p).name, side) for p in paths]
    for view in views:
        labels = png_labels(view.path) if view.path is not None else {}
        view.fidelity = _fidelity(labels.get("fidelity"), emulator)
        view.engine, view.note = labels.get("engine"), labels.get("note")
    return views


def _graph(
    ids: list[str], deps: dict[str, set[str]]
) -> tuple[tuple[tuple[str, ...], ...], list[tuple[str, str]]]:
    try:
        graph = Graph(ids, deps)
        return graph.levels(), graph.edges()
    except (CycleError, ValueError):
        return (tuple(ids),), []


def _attempt(a: dict[str, Any]) -> AttemptView:
    return AttemptView(
        number=int(a.get("number", 0)),
        task_id=a.get("task_id"),
        status=a.get("status"),
        submit_time=a.get("submit_time"),
        scheduled_time=a.get("scheduled_time"),
        end_time=a.get("end_time"),
        submitted_at=a.get("submitted_at"),
        noticed_at=a.get("noticed_at"),
        queries=int(a.get("queries") or 0),
        reattached=bool(a.get("reattached")),
        usage_images=int(a.get("usage_images") or 0),
        error=_error(a.get("error")),
    )


def _error(e: Any) -> dict[str, Any] | None:
    if not isinstance(e, dict):
        return None
    return {
        "code": str(e.get("code", "")),
        "message": redact_text(str(e.get("message", ""))),
        "status": e.get("status") or 0,
        "request_id": e.get("request_id"),
        "task_id": e.get("task_id"),
    }


def _param(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith("data:"):
            return redact_url(value)
        return redact_text(value)
    return value


def _money(value: Any) -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        amount = Decimal(0)
    return f"{amount:.4f}"


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _href(rel: str) -> str:
    return quote(rel.replace(os.sep, "/"))


def price() -> str:
    return f"{wire.PRICE_PER_IMAGE_USD}"
