"""The static checks of ``foreach:``, ``matrix:``, ``if:`` and ``on_skipped:`` on one step.

Their templates are analysed like every other (syntax, unknown names and params); on top:
``if:``, ``matrix:`` and literal ``foreach:`` items are decided before the run, so they cannot
use step results; ``foreach:`` may go over one step's images, written exactly as
``"{{ steps.<id>.images }}"``; ``item``/``loop``/``matrix`` exist only where they mean something.
Expanding the step is :mod:`wanrecipe.recipe.expand`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from .expand import condition_source, names_used
from .loader import Location, PathKey
from .templating import Template

_STEP_IMAGES = re.compile(
    r"""^\s*\{\{\s*steps\s*(?:\.\s*(?P<a>[a-z][a-z0-9_-]*)|\[\s*(?P<q>['"])(?P<b>[a-z][a-z0-9_-]*)"""
    r"""(?P=q)\s*\])\s*\.\s*images\s*\}\}\s*$"""
)


class _Builder(Protocol):
    def error(
        self, where: Location, dotted: str, message: str, hint: str | None = None
    ) -> None: ...

    def template(
        self, value: str, where: Location, dotted: str, path: PathKey | None = None
    ) -> Template | None: ...

    def check_params_known(self, template: Template, where: Location, dotted: str) -> None: ...


def fanout_names(raw: Mapping[str, Any]) -> frozenset[str]:
    """The names a step's templates may use besides params/steps/step/recipe."""
    if "foreach" in raw:
        return frozenset({"item", "loop"})
    if "matrix" in raw:
        return frozenset({"matrix", "loop"})
    return frozenset()


class FanoutFields:
    """Checks the fields of step ``sid``; ``source`` is the step ``foreach:`` goes over."""

    def __init__(
        self,
        builder: _Builder,
        sid: str,
        raw: Mapping[str, Any],
        sources: Mapping[str, Location],
        used_params: set[str],
    ) -> None:
        self.b = builder
        self.sid = sid
        self.sources = sources
        self.used_params = used_params
        self.source: str | None = None
        here: PathKey = ("steps", sid)
        if "foreach" in raw and "matrix" in raw:
            builder.error(
                sources["foreach"],
                f"steps.{sid}",
                "a step has foreach: or matrix:, not both",
                "make the list one more dimension of the matrix: matrix: {item: [...], ...}",
            )
        if "foreach" in raw:
            self.foreach(raw["foreach"], (*here, "foreach"))
        for name, value in (raw.get("matrix") or {}).items():
            self.static_list(value, f"matrix.{name}", (*here, "matrix", name))
        if isinstance(raw.get("if"), str):
            self.condition(raw["if"], fanout_names(raw))
            source = condition_source(raw["if"]) or ""
            if self.source is not None and "item" in names_used(source):
                builder.error(
                    sources["if"],
                    f"steps.{sid}.if",
                    "if: cannot use item here: the items are step outputs, known only at run time",
                    "decide with params or loop; every if: is decided before the run",
                )

    def foreach(self, value: object, path: PathKey) -> None:
        dotted = f"steps.{self.sid}.foreach"
        where = self.sources["foreach"]
        if not isinstance(value, str):
            self.static_list(value, "foreach", path)
            return
        template = self.analyse(value, where, dotted, path, own_names=True)
        if template is None or not template.steps:
            return
        m = _STEP_IMAGES.match(value)
        if m is None:
            self.b.error(
                where,
                dotted,
                "foreach can go over one step's images, written as "
                '"{{ steps.<id>.images }}"; other uses of step results are not known '
                "before the run",
                f'write foreach: "{{{{ steps.{sorted(template.steps)[0]}.images }}}}"',
            )
            return
        self.source = m.group("a") or m.group("b")

    def static_list(self, value: object, field: str, path: PathKey) -> None:
        dotted = f"steps.{self.sid}.{field}"
        where = self.sources.get(field, self.sources.get("foreach", Location("")))
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str):
                continue
            template = self.analyse(item, where, dotted, path, own_names=True)
            if template is not None and template.steps:
                self.b.error(
                    where,
                    dotted,
                    f"{field} is decided before the run and cannot use step results "
                    f"(steps.{sorted(template.steps)[0]})",
                    'to run once per image of a step, write foreach: "{{ steps.<id>.images }}"',
                )

    def condition(self, value: str, allowed: frozenset[str]) -> None:
        dotted = f"steps.{self.sid}.if"
        where = self.sources["if"]
        source = condition_source(value)
        assert source is not None
        template = self.b.template(source, where, dotted)
        if template is None:
            return
        self.used_params |= template.params
        self.b.check_params_known(template, where, dotted)
        for name in sorted(names_used(source) - allowed):
            needs = {"item": "foreach:", "matrix": "matrix:"}.get(name, "foreach: or matrix:")
            self.b.error(where, dotted, f"{name!r} is only defined in a step with {needs}")
        if template.steps:
            self.b.error(
                where,
                dotted,
                "if: is decided before the run and cannot use step results "
                f"(steps.{sorted(template.steps)[0]})",
                "decide with params, item, loop or matrix; a step that may lack an input can "
                "say on_skipped: run",
            )

    def analyse(
        self, value: str, where: Location, dotted: str, path: PathKey, *, own_names: bool
    ) -> Template | None:
        template = self.b.template(value, where, dotted, path)
        if template is None:
            return None
        self.used_params |= template.params
        self.b.check_params_known(template, where, dotted)
        if own_names:
            for name in sorted(names_used(value)):
                self.b.error(
                    where,
                    dotted,
                    f"{name!r} cannot be used here: it comes from this list",
                    "use params (or a literal list)",
                )
        return template
