"""``foreach:``, ``matrix:`` and ``if:``: steps expanded into instances before the run.

A step with ``foreach:`` or ``matrix:`` becomes one instance per item or combination, ids
``<id>.0``, ``<id>.1``, ... (0-based, like ``images[i]``; a dot never appears in a step id
as written, so instance ids cannot collide with one, and ``styles.3.png`` is a safe file name).
A step without either keeps its id. Everything is decided here, from the bound params alone:
the lists (literal, a list param, or another step's images, whose number ``n`` is known once
params are bound), ``if:`` (per instance: it may use ``item``, ``loop`` and ``matrix``), and
what a skipped step means downstream. The scheduler then sees ordinary steps.

Skipping: an instance whose ``if:`` is false is skipped; a step as written that runs no
instance (all skipped, or ``foreach`` over an empty list) is skipped; a step referring to or
needing a skipped step is skipped too, unless it says ``on_skipped: run`` (then that step's
``images`` is ``[]`` and its ``image`` none). A fanned-out step with some instances left is not
skipped: ``steps.<id>.images`` holds what the remaining instances make.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta

from .. import wire
from ..errors import Diagnostic, Severity
from ..redact import redact_text
from .dag import Graph
from .model import Fanout, Skip, Step
from .templating import Scope, TemplateProblem, compile_template, is_template

FANOUT_NAMES = frozenset({"item", "loop", "matrix"})
_FALSE_TEXT = frozenset({"", "false", "no", "off", "0", "none"})
_PARSER = jinja2.Environment()


@dataclass
class Expansion:
    """The instances that run, their dependencies, and what is skipped."""

    steps: list[Step] = field(default_factory=list)
    deps: dict[str, set[str]] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skipped: dict[str, Skip] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def condition_source(raw: object) -> str | None:
    """``if:`` as a template: ``params.x`` -> ``{{ (params.x) }}``; None for a boolean."""
    if not isinstance(raw, str):
        return None
    return raw if is_template(raw) else "{{ (" + raw + ") }}"


@lru_cache(maxsize=4096)
def names_used(source: str) -> frozenset[str]:
    """Which of item, loop, matrix a template uses (undeclared names only: a ``loop`` of a
    ``{% for %}`` inside the template is Jinja's own)."""
    if not any(name in source for name in FANOUT_NAMES) or not is_template(source):
        return frozenset()
    try:
        ast = _PARSER.parse(source)
    except jinja2.TemplateSyntaxError:
        return frozenset()  # reported by the template check
    return frozenset(meta.find_undeclared_variables(ast) & FANOUT_NAMES)


def static_context(
    params: Mapping[str, object],
    recipe: Mapping[str, object],
    step: Step,
    fanout: Fanout | None,
    item: object = None,
) -> dict[str, Any]:
    """What ``if:``, ``foreach:``, ``matrix:`` and ``n`` see before the run (and, with the
    real ``item``, what every template of an instance sees besides ``steps``)."""
    context: dict[str, Any] = {
        "params": Scope("params", params),
        "recipe": Scope("recipe", recipe),
        "step": Scope("step", {"id": step.id, "function": step.function, "name": step.name}),
    }
    if fanout is not None:
        context["loop"] = Scope("loop", fanout.loop())
        if fanout.kind == "matrix":
            context["matrix"] = Scope("matrix", dict(fanout.matrix or {}))
        else:
            context["item"] = fanout.item if fanout.item_from is None else item
    return context


class Expander:
    def __init__(
        self,
        steps: Mapping[str, Step],
        graph: Graph,
        params: Mapping[str, object],
        recipe: Mapping[str, object],
        max_instances: int,
    ) -> None:
        self.steps = steps
        self.graph = graph
        self.params = params
        self.recipe = recipe
        self.max_instances = max_instances
        self.out = Expansion()
        self.instances: dict[str, Step] = {}
        self._reported: set[tuple[str, str]] = set()

    def run(self) -> Expansion:
        for group in self.graph.topological_order():
            self.expand(self.steps[group])
        # Declared order, instances in order: the scheduler's tie-break and the plan's order.
        order = {sid: i for i, sid in enumerate(self.steps)}
        self.out.steps.sort(key=lambda s: order[s.name])
        self.out.skipped = dict(sorted(self.out.skipped.items(), key=lambda kv: order[kv[1].group]))
        return self.out

    # -- one step as written ---------------------------------------------------------------

    def expand(self, step: Step) -> None:
        bindings = self.bindings(step)
        if bindings is None:  # an error, already reported
            self.out.groups[step.id] = ()
            return
        if not bindings:
            self.out.groups[step.id] = ()
            return
        kept: list[str] = []
        for fanout in bindings:
            sid = step.id if fanout is None else f"{step.id}.{fanout.index}"
            instance = (
                step if fanout is None else replace(step, id=sid, group=step.id, fanout=fanout)
            )
            reason = self.condition(instance)
            deps: set[str] = set()
            skipped_refs: list[str] = []
            for ref in sorted(step.references | set(step.needs)):
                ids = self.out.groups.get(ref, ())
                if ids:
                    deps.update(ids)
                else:
                    skipped_refs.append(ref)
            if fanout is not None and fanout.item_from is not None:
                deps.add(fanout.item_from[0])
            if reason is None and skipped_refs and step.on_skipped == "skip":
                reason = f"needs {skipped_refs[0]!r}, which is skipped"
            if reason is not None:
                self.out.skipped[sid] = Skip(
                    sid, step.id, step.function, reason, step.location, fanout
                )
                continue
            kept.append(sid)
            self.out.steps.append(instance)
            self.out.deps[sid] = deps
            self.instances[sid] = instance
        self.out.groups[step.id] = tuple(kept)

    def bindings(self, step: Step) -> list[Fanout | None] | None:
        if step.foreach is None and step.matrix is None:
            return [None]
        if step.matrix is not None:
            return self.matrix(step)
        return self.foreach(step)

    def foreach(self, step: Step) -> list[Fanout | None] | None:
        where = step.location_of("foreach")
        if step.foreach_source is not None:
            source = step.foreach_source
            ids = self.out.groups.get(source, ())
            if not ids:
                self.skip_all(
                    step, f"foreach over steps.{source}.images, and {source!r} is skipped"
                )
                return []
            refs: list[tuple[str, int]] = []
            for sid in ids:
                count = self.count(self.instances[sid])
                if count is None:
                    self.error(
                        where,
                        f"steps.{step.id}.foreach",
                        f"the number of images of steps.{source} is not known before the run "
                        "(its n depends on step results)",
                        f"give {source} a fixed n, or one that depends on params only",
                    )
                    return None
                refs.extend((sid, j) for j in range(count))
            if len(ids) == 1 and len(refs) == 1:
                self.warn(
                    where,
                    f"steps.{step.id}.foreach",
                    f"steps.{source} makes one image (n is 1): this step runs once",
                    f"set n (2-4) on {source} to fan out over its images",
                )
            if not self.within_cap(step, len(refs), where, "foreach"):
                return None
            return [Fanout("foreach", i, len(refs), item_from=ref) for i, ref in enumerate(refs)]
        items = self.static_list(step, step.foreach, where, f"steps.{step.id}.foreach", "foreach")
        if items is None:
            return None
        if not items:
            self.warn(
                where,
                f"steps.{step.id}.foreach",
                "foreach over an empty list: the step is skipped",
            )
            self.skip_all(step, "foreach over an empty list")
            return []
        if not self.within_cap(step, len(items), where, "foreach"):
            return None
        return [Fanout("foreach", i, len(items), item=v) for i, v in enumerate(items)]

    def matrix(self, step: Step) -> list[Fanout | None] | None:
        assert step.matrix is not None
        where = step.location_of("matrix")
        if not step.matrix:
            self.error(
                where,
                f"steps.{step.id}.matrix",
                "an empty matrix",
                "name at least one list, e.g. matrix: {style: [ink, oil]}",
            )
            return None
        dims: dict[str, list[object]] = {}
        for name, raw in step.matrix.items():
            dotted = f"steps.{step.id}.matrix.{name}"
            at = step.location_of(f"matrix.{name}")
            values = self.static_list(step, raw, at, dotted, f"matrix.{name}")
            if values is None:
                return None
            if not values:
                self.error(at, dotted, f"matrix.{name} is an empty list: the step would never run")
                return None
            dims[name] = values
        total = 1
        for values in dims.values():
            total *= len(values)
        if not self.within_cap(step, total, where, "matrix"):
            return None
        names = list(dims)
        return [
            Fanout("matrix", i, total, matrix=dict(zip(names, combo, strict=True)))
            for i, combo in enumerate(itertools.product(*dims.values()))
        ]

    def static_list(
        self, step: Step, raw: object, where: Any, dotted: str, what: str
    ) -> list[object] | None:
        context = static_context(self.params, self.recipe, step, None)
        if isinstance(raw, list):
            out: list[object] = []
            for item in raw:
                if isinstance(item, str) and is_template(item):
                    value = self.render(item, context, where, dotted)
                    if value is _FAILED:
                        return None
                    out.append(value)
                else:
                    out.append(item)
            return out
        assert isinstance(raw, str)
        value = self.render(raw, context, where, dotted)
        if value is _FAILED:
            return None
        if not isinstance(value, list | tuple):
            self.error(
                where,
                dotted,
                f"{what} needs a list; {raw.strip()} is {value!r}",
                "write a YAML list, or use a param declared with type: list",
            )
            return None
        return list(value)

    def condition(self, step: Step) -> str | None:
        """The reason to skip, or None to run."""
        raw = step.condition
        if raw is None:
            return None
        if isinstance(raw, bool):
            return None if raw else "if: false"
        context = static_context(self.params, self.recipe, step, step.fanout)
        source = condition_source(raw)
        assert source is not None
        value = self.render(source, context, step.location_of("if"), f"steps.{step.name}.if")
        if value is _FAILED or _truthy(value):
            return None
        shown = str(raw).strip()
        if step.fanout is None or not names_used(source):
            return f"if: {shown} is false"
        return f"if: {shown} is false ({_describe(step.fanout)})"

    def count(self, step: Step) -> int | None:
        """Images ``step`` (an instance that runs) makes, when known before the run."""
        raw = step.parameters.get("n", 1)
        if isinstance(raw, str):
            context = static_context(self.params, self.recipe, step, step.fanout)
            try:
                template = compile_template(raw)
            except TemplateProblem:
                return 1
            if template.steps:
                return None
            try:
                raw = template.render(context)
            except TemplateProblem:
                return 1  # reported when the step is rendered
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw.strip())
        top = int(wire.PARAMS["n"].maximum or 4)
        if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= top:
            return raw
        return 1  # out of range: reported when the step is rendered

    # -- helpers ---------------------------------------------------------------------------

    def within_cap(self, step: Step, count: int, where: Any, what: str) -> bool:
        if count <= self.max_instances:
            return True
        self.error(
            where,
            f"steps.{step.id}.{what}",
            f"{what} gives {count} instances, more than max_instances ({self.max_instances})",
            "shorten the list, or raise max_instances: at the top of the recipe",
        )
        return False

    def skip_all(self, step: Step, reason: str) -> None:
        self.out.skipped[step.id] = Skip(step.id, step.id, step.function, reason, step.location)

    def render(self, source: str, context: Mapping[str, Any], where: Any, dotted: str) -> object:
        try:
            return compile_template(source).render(context)
        except TemplateProblem as exc:
            self.error(where, dotted, exc.message, exc.hint)
            return _FAILED

    def error(self, where: Any, dotted: str, message: str, hint: str | None = None) -> None:
        self._add(where, dotted, message, hint, "error")

    def warn(self, where: Any, dotted: str, message: str, hint: str | None = None) -> None:
        self._add(where, dotted, message, hint, "warning")

    def _add(self, where: Any, dotted: str, message: str, hint: str | None, sev: Severity) -> None:
        # Once per place and message: 1,000 instances of one mistake are one message.
        if (dotted, message) in self._reported:
            return
        self._reported.add((dotted, message))
        self.out.diagnostics.append(
            Diagnostic(
                where.file, where.line, where.column, dotted, redact_text(message), sev, hint=hint
            )
        )


_FAILED = object()


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_TEXT
    return bool(value)


def _describe(fanout: Fanout) -> str:
    if fanout.kind == "matrix":
        return ", ".join(f"{k}={v}" for k, v in (fanout.matrix or {}).items())
    return f"item={fanout.describe()['item']!r}"


_INSTANCE = re.compile(r"^(?P<group>[a-z][a-z0-9_-]*)\.(?P<index>\d+)$")


def split_instance(sid: str) -> tuple[str, int | None]:
    """``styles.3`` -> ``("styles", 3)``; ``widen`` -> ``("widen", None)``."""
    m = _INSTANCE.match(sid)
    return (m.group("group"), int(m.group("index"))) if m else (sid, None)


def expand(
    steps: Mapping[str, Step],
    graph: Graph,
    params: Mapping[str, object],
    recipe: Mapping[str, object],
    max_instances: int,
) -> Expansion:
    """Expand every step (``graph``: the steps as written, without cycles)."""
    return Expander(steps, graph, params, recipe, max_instances).run()
