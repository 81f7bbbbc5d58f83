"""A run's ``run.json`` turned into what its report page shows.

Everything comes from the record and the files in the run directory; the recipe file, when it
is still there and still has the run's steps, adds the description, ``needs:`` edges and the
prompt of a step that came from the store (see ``recipe_info``). Links are relative to the page,
so the folder can be zipped or opened from ``file://``.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...recipe.dag import CycleError, Graph
from ...redact import redact_text, redact_url
from .imagerefs import fidelity_of, file_view, output_ref, step_inputs, strip_query
from .recipe_info import RecipeInfo, recipe_info
from .thumbs import MAX_SIDE, png_labels
from .views import AttemptView, ImageView, RunView, StepView

__all__ = [
    "AttemptView",
    "ImageView",
    "RunView",
    "StepView",
    "build_run_view",
    "money",
    "param_value",
    "read_record",
]


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


def build_run_view(
    run_dir: Path, data: dict[str, Any], *, side: int = MAX_SIDE, recipe: Any = None
) -> RunView:
    """The page's view of one run; ``run_dir`` is where ``run.json`` and the images are, which
    is also where the page goes. ``recipe``: the run's recipe as it ran (the end of ``run``
    has it), else it is loaded again from its file."""
    steps_data: dict[str, Any] = data.get("steps") or {}
    ids = list(steps_data)
    info = recipe_info(
        str(data.get("recipe", "")), dict(data.get("params") or {}), ids, recipe=recipe
    )
    results_by_url: dict[str, tuple[str, int]] = {}
    for sid, s in steps_data.items():
        for r in s.get("results") or []:
            if r.get("url"):
                results_by_url[strip_query(r["url"])] = (sid, int(r.get("index", 0)))
    backend = str(data.get("backend", ""))
    emulator = not backend.startswith("dashscope")
    steps: dict[str, StepView] = {}
    for sid, s in steps_data.items():
        steps[sid] = _step_view(run_dir, sid, s, info, emulator, side)
    for sid, s in steps_data.items():
        steps[sid].inputs = step_inputs(run_dir, s, info.rendered.get(sid), steps, results_by_url)
    deps = {sid: set(info.deps.get(sid, ())) for sid in ids}
    for sid, view in steps.items():
        deps[sid].update(i.step for i in view.inputs if i.step in steps and i.step != sid)
    graph_levels, edges = _graph(ids, deps)
    for n, level in enumerate(graph_levels):
        for sid in level:
            steps[sid].level = n
            steps[sid].deps = tuple(d for d, t in edges if t == sid)
    outputs = [
        (name, [output_ref(run_dir, p, steps, side) for p in paths])
        for name, paths in (data.get("outputs") or {}).items()
    ]
    return RunView(
        name=str(data.get("name", run_dir.name)),
        recipe=str(data.get("recipe", "")),
        description=info.description,
        params={k: param_value(v) for k, v in (data.get("params") or {}).items()},
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
        cost_usd=money(data.get("cost_usd")),
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
        parameters={k: param_value(v) for k, v in parameters.items()},
        seed=s.get("seed"),
        key=s.get("key"),
        cached_from=s.get("cached_from"),
        images_billed=int(s.get("images_billed") or 0),
        cost_usd=money(s.get("cost_usd")),
        error=_error(s.get("error")),
        failed_outputs=[e for e in (_error(x) for x in s.get("failed_outputs") or []) if e],
        skipped_because=s.get("skipped_because"),
        attempts=attempts,
        started_at=s.get("started_at"),
        finished_at=s.get("finished_at"),
    )
    for r in s.get("results") or []:
        index = int(r.get("index", 0))
        img = file_view(run_dir, str(r.get("path", "")), f"output {index + 1}", side)
        labels = {k: r[k] for k in ("fidelity", "engine", "note") if r.get(k)}
        if not labels and img.path is not None:
            labels = png_labels(img.path)
        img.fidelity = fidelity_of(labels.get("fidelity"), emulator)
        img.engine, img.note = labels.get("engine"), labels.get("note")
        img.width = img.width or int(r.get("width") or 0)
        img.height = img.height or int(r.get("height") or 0)
        view.outputs.append(img)
    return view


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


def param_value(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith("data:"):
            return redact_url(value)
        return redact_text(value)
    return value


def money(value: Any) -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        amount = Decimal(0)
    return f"{amount:.4f}"
