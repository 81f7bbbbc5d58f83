"""What a run would do, before it does it: levels, billed images, cost, shortest wall time.

Every step is rendered with placeholder outputs (so parameters that come from templates are
checked and ``n`` is known) and its local inputs are inspected.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from .. import wire
from ..durations import format_duration
from ..errors import Diagnostic, RecipeError
from ..redact import redact_text, redact_url, redact_value
from .model import Recipe
from .preflight import InputChecker, check_outputs
from .render import RenderedStep, render_step

_MAX_N = int(wire.PARAMS["n"].maximum or 4)
_SHOWN_FAILING_INSTANCES = 3
#: Parameters shown in the plan (all of them except the ones every step has).
_QUIET_PARAMETERS = frozenset({"watermark"})


@dataclass(frozen=True)
class PlannedImage:
    """Stands in for a step output at plan time; prints as ``<steps.x.image>``."""

    step_id: str
    index: int

    def __str__(self) -> str:
        return f"<steps.{self.step_id}.images[{self.index}]>"


@dataclass(frozen=True)
class Quota:
    """The account limits the wall-time estimate assumes."""

    submit_rps: float = wire.SUBMIT_RPS
    concurrency: int = wire.CONCURRENCY
    task_seconds: float = wire.TYPICAL_TASK_SECONDS


@dataclass(frozen=True)
class PlannedStep:
    id: str
    function: str
    level: int
    needs: tuple[str, ...]
    #: Images billed when the task succeeds (``n``).
    images: int
    parameters: Mapping[str, object]
    #: The input image, described: a path relative to the recipe, a URL, or ``steps.<id>``.
    input: str
    prompt: str
    description: str = ""
    #: The step as written (``styles`` for ``styles.2``).
    group: str = ""
    #: For an instance of a foreach/matrix step: ``{"index", "item"}`` or ``{"index", "matrix"}``.
    fanout: Mapping[str, object] | None = None


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    levels: tuple[tuple[PlannedStep, ...], ...]
    billed_images: int
    cost_usd: Decimal
    wall_seconds: float
    quota: Quota
    warnings: tuple[Diagnostic, ...] = field(default=())

    @property
    def steps(self) -> list[PlannedStep]:
        return [s for level in self.levels for s in level]

    def to_dict(self) -> dict[str, Any]:
        """The ``plan --json`` document. Every string in it is redacted (a param, prompt or
        fan-out item may hold a signed URL or a key: ``-p photo=<signed URL>``)."""
        return cast(dict[str, Any], redact_value(self._document()))

    def _document(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.file,
            "name": self.recipe.name,
            "params": {
                k: _param_text(self.recipe, k, v)
                if self.recipe.param_decls[k].type == "image"
                else _jsonable(v)
                for k, v in self.recipe.params.items()
            },
            "levels": [
                [
                    {
                        "id": s.id,
                        "function": s.function,
                        "needs": list(s.needs),
                        "images": s.images,
                        "parameters": {k: _jsonable(v) for k, v in s.parameters.items()},
                        "input": s.input,
                        "prompt": s.prompt,
                        "description": s.description,
                        "group": s.group,
                        "fanout": _jsonable(s.fanout) if s.fanout is not None else None,
                    }
                    for s in level
                ]
                for level in self.levels
            ],
            "steps": len(self.steps),
            "steps_as_written": len(self.recipe.steps_as_written),
            "skipped": [
                {
                    "id": k.id,
                    "group": k.group,
                    "function": k.function,
                    "reason": k.reason,
                    "fanout": _jsonable(k.fanout.describe()) if k.fanout else None,
                }
                for k in self.recipe.skipped.values()
            ],
            "billed_images": self.billed_images,
            "price_per_image_usd": str(wire.PRICE_PER_IMAGE_USD),
            "cost_usd": str(self.cost_usd),
            "wall_seconds": round(self.wall_seconds, 3),
            "quota": {
                "submit_rps": self.quota.submit_rps,
                "concurrency": self.quota.concurrency,
                "task_seconds": self.quota.task_seconds,
            },
            "warnings": [_diagnostic_dict(d) for d in self.warnings],
        }


def check_rendering(recipe: Recipe) -> tuple[dict[str, RenderedStep], list[Diagnostic]]:
    """Render every step with placeholders and inspect known inputs; collect every problem."""
    rendered: dict[str, RenderedStep] = {}
    problems: list[Diagnostic] = []
    outputs: dict[str, list[object]] = {}
    checker = InputChecker(recipe)
    failing: dict[str, list[str]] = {}
    for sid in recipe.graph.topological_order():
        try:
            step = render_step(recipe, sid, outputs)
        except RecipeError as exc:
            # A mistake in a fanned-out step shows in the first instances, not in all 1,000.
            failed = failing.setdefault(recipe.step(sid).name, [])
            failed.append(sid)
            if len(failed) <= _SHOWN_FAILING_INSTANCES:
                problems.extend(exc.diagnostics)
            # n is unknown: assume the most, so `images[3]` downstream is no cascade error.
            outputs[sid] = [PlannedImage(sid, i) for i in range(_MAX_N)]
            continue
        rendered[sid] = step
        problems.extend(step.warnings)
        problems.extend(checker.check(step))
        outputs[sid] = [PlannedImage(sid, i) for i in range(step.n)]
    for group, failed in failing.items():
        if len(failed) > _SHOWN_FAILING_INSTANCES:
            where = recipe.step(failed[0]).location
            problems.append(
                Diagnostic(
                    where.file,
                    where.line,
                    where.column,
                    f"steps.{group}",
                    f"{len(failed) - _SHOWN_FAILING_INSTANCES} more instances of {group} fail "
                    f"to render ({', '.join(failed[_SHOWN_FAILING_INSTANCES:][:3])}, ...)",
                )
            )
    problems.extend(check_outputs(recipe, outputs))
    return rendered, sorted(problems)


def make_plan(recipe: Recipe, quota: Quota = Quota()) -> Plan:
    """Plan the run. Raises RecipeError when a step cannot be rendered or an input is bad."""
    rendered, problems = check_rendering(recipe)
    if any(d.severity == "error" for d in problems):
        raise RecipeError([*recipe.warnings, *problems])
    levels: list[tuple[PlannedStep, ...]] = []
    for index, ids in enumerate(recipe.levels()):
        levels.append(tuple(_planned(recipe, rendered[sid], index) for sid in ids))
    billed = sum(r.n for r in rendered.values())
    wall = estimate_wall_time(
        {sid: recipe.deps(sid) for sid in recipe.step_ids},
        submit_rps=quota.submit_rps,
        concurrency=quota.concurrency,
        task_seconds=quota.task_seconds,
    )
    return Plan(
        recipe=recipe,
        levels=tuple(levels),
        billed_images=billed,
        cost_usd=billed * wire.PRICE_PER_IMAGE_USD,
        wall_seconds=wall,
        quota=quota,
        warnings=tuple(sorted([*recipe.warnings, *problems])),
    )


def estimate_wall_time(
    deps: Mapping[str, Sequence[str]],
    *,
    submit_rps: float = wire.SUBMIT_RPS,
    concurrency: int = wire.CONCURRENCY,
    task_seconds: float = wire.TYPICAL_TASK_SECONDS,
) -> float:
    """Seconds from the first submit to the last result, scheduling tasks as early as the quota
    allows: at most ``submit_rps`` submissions per second, ``concurrency`` tasks at once, each
    ``task_seconds`` long.

    List scheduling with critical-path priority (the ready task with the longest chain behind it
    goes first), which is optimal or nearly so for equal task times; ``deps`` maps every task
    to the tasks it waits for, keys in a stable order.
    """
    if not deps:
        return 0.0
    if submit_rps <= 0 or concurrency < 1 or task_seconds < 0:
        raise ValueError("submit_rps and concurrency must be positive, task_seconds >= 0")
    order = {n: i for i, n in enumerate(deps)}
    dependents: dict[str, list[str]] = {n: [] for n in deps}
    waiting = {n: len(set(ds)) for n, ds in deps.items()}
    for n, ds in deps.items():
        for d in set(ds):
            dependents[d].append(n)
    priority = _chain_lengths(deps, dependents)
    gap = 1.0 / submit_rps
    ready: list[tuple[int, int, str]] = [
        (-priority[n], order[n], n) for n in deps if not waiting[n]
    ]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []  # (finish time, tiebreak, task)
    now = 0.0
    next_submit = 0.0
    finished = 0
    end = 0.0
    while finished < len(deps):
        start = max(now, next_submit)
        if ready and len(running) < concurrency and not (running and running[0][0] < start):
            _, _, task = heapq.heappop(ready)
            finish = start + task_seconds
            heapq.heappush(running, (finish, order[task], task))
            next_submit = start + gap
            now = start
            continue
        if not running:
            raise ValueError("the dependencies have a cycle")
        # Nothing can start before the next task finishes: let it finish.
        now, _, done = heapq.heappop(running)
        end = max(end, now)
        finished += 1
        for child in dependents[done]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (-priority[child], order[child], child))
    return end


def _chain_lengths(
    deps: Mapping[str, Sequence[str]], dependents: Mapping[str, Sequence[str]]
) -> dict[str, int]:
    # Longest path to a sink, by reverse topological order (Kahn's order, iterative).
    waiting = {n: len(set(ds)) for n, ds in deps.items()}
    queue = [n for n in deps if not waiting[n]]
    i = 0
    while i < len(queue):
        for child in dependents[queue[i]]:
            waiting[child] -= 1
            if not waiting[child]:
                queue.append(child)
        i += 1
    if len(queue) != len(deps):
        raise ValueError("the dependencies have a cycle")
    length: dict[str, int] = {}
    for n in reversed(queue):
        length[n] = 1 + max((length[c] for c in dependents[n]), default=0)
    return length


def _planned(recipe: Recipe, rendered: RenderedStep, level: int) -> PlannedStep:
    step = recipe.step(rendered.id)
    shown = {k: v for k, v in rendered.parameters.items() if k not in _QUIET_PARAMETERS}
    return PlannedStep(
        id=rendered.id,
        function=rendered.function,
        level=level,
        needs=recipe.deps(rendered.id),
        images=rendered.n,
        parameters=shown,
        input=_describe_input(recipe, rendered.image),
        prompt=rendered.prompt,
        description=step.description,
        group=step.name,
        fanout=step.fanout.describe() if step.fanout is not None else None,
    )


def _describe_input(recipe: Recipe, image: object) -> str:
    if isinstance(image, PlannedImage):
        return f"steps.{image.step_id}" + (f".images[{image.index}]" if image.index else "")
    if isinstance(image, Path):
        return recipe.display_path(image)
    # Signed URLs carry credentials in the query, data URIs are huge: show neither.
    return redact_url(str(image))


def _jsonable(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _diagnostic_dict(d: Diagnostic) -> dict[str, object]:
    return {
        "file": d.file,
        "line": d.line,
        "column": d.column,
        "path": d.path,
        "severity": d.severity,
        "message": d.message,
        "hint": d.hint,
    }


def diagnostic_dict(d: Diagnostic) -> dict[str, object]:
    """A Diagnostic as JSON (``validate --json``, ``plan --json``)."""
    return _diagnostic_dict(d)


def format_plan(plan: Plan) -> str:
    """The human ``plan`` output: values redacted before they are shortened (a cut-off
    signed URL would still show the start of its query), then the whole text again."""
    return redact_text(_plan_text(plan))


def _plan_text(plan: Plan) -> str:
    lines = [f"{plan.recipe.file}: {plan.recipe.name}"]
    if plan.recipe.params:
        shown = ", ".join(
            f"{k}={_short(_param_text(plan.recipe, k, v))}" for k, v in plan.recipe.params.items()
        )
        lines.append(f"params: {shown}")
    for index, level in enumerate(plan.levels):
        lines.append(f"level {index + 1}:")
        for s in _elided(level):
            if isinstance(s, str):
                lines.append(s)
                continue
            params = ", ".join(f"{k}={redact_text(str(v))}" for k, v in s.parameters.items())
            extra = f" [{params}]" if params else ""
            lines.append(f"  {s.id:<16} {s.function:<27} <- {s.input}{extra}{_fanout_text(s)}")
    if plan.recipe.skipped:
        lines.append("skipped:")
        for k in plan.recipe.skipped.values():
            lines.append(f"  {k.id:<16} {k.function:<27} {k.reason}")
    q = plan.quota
    steps, levels = len(plan.steps), len(plan.levels)
    written = len(plan.recipe.steps_as_written)
    origin = ""
    if written != steps or plan.recipe.skipped:
        origin = f" (from {written} as written"
        origin += f", {len(plan.recipe.skipped)} skipped)" if plan.recipe.skipped else ")"
    lines.append(
        f"{steps} step{'s' if steps != 1 else ''} in {levels} level{'s' if levels != 1 else ''}"
        f"{origin}, {plan.billed_images} billed images, "
        f"est. ${plan.cost_usd:.6f} at ${wire.PRICE_PER_IMAGE_USD}/image"
    )
    lines.append(
        f"shortest wall time: {format_duration(plan.wall_seconds)} "
        f"({q.submit_rps:g} submits/s, {q.concurrency} tasks at once, "
        f"~{q.task_seconds:g}s per task)"
    )
    return "\n".join(lines)


_SHOWN_PER_GROUP = 6


def _elided(level: Sequence[PlannedStep]) -> list[PlannedStep | str]:
    """The level's steps, a long run of one fanned-out step's instances cut in the middle."""
    out: list[PlannedStep | str] = []
    i = 0
    while i < len(level):
        j = i
        while j < len(level) and level[j].group == level[i].group:
            j += 1
        run = level[i:j]
        if level[i].fanout is not None and len(run) > _SHOWN_PER_GROUP:
            head = _SHOWN_PER_GROUP - 2
            out.extend(run[:head])
            out.append(f"  ... {len(run) - head - 1} more instances of {level[i].group}")
            out.append(run[-1])
        else:
            out.extend(run)
        i = j
    return out


def _fanout_text(step: PlannedStep) -> str:
    if step.fanout is None:
        return ""
    if "matrix" in step.fanout:
        values = step.fanout["matrix"]
        assert isinstance(values, Mapping)
        return (
            " {" + ", ".join(f"{k}={_short(redact_text(str(v)))}" for k, v in values.items()) + "}"
        )
    item = step.fanout.get("item")
    if isinstance(item, str) and (
        step.input in (item, redact_text(item)) or item.startswith("steps.")
    ):
        return ""  # the input column already says it
    return " {item=" + _short(redact_text(item if isinstance(item, str) else repr(item))) + "}"


def _param_text(recipe: Recipe, name: str, value: object) -> str:
    if recipe.param_decls[name].type == "image" and isinstance(value, str):
        if os.path.isabs(value):
            return recipe.display_path(Path(value))
        return redact_url(value)
    return redact_text(str(value))


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
