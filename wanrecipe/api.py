"""The public Python API: load, validate and plan recipes (the runner adds ``run_recipe``).

``params`` values may be strings (converted to the declared type, as ``-p`` does) or already
typed values; ``param_files`` are YAML or JSON mappings applied before ``params``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import Diagnostic, RecipeError
from .recipe.build import build_recipe
from .recipe.loader import load_file
from .recipe.model import Recipe
from .recipe.params import GivenValue, given_from_file, given_from_mapping
from .recipe.plan import Plan, Quota, check_rendering, diagnostic_dict, make_plan

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ValidationReport:
    """Everything ``validate`` found in one recipe, warnings included."""

    file: str
    diagnostics: tuple[Diagnostic, ...] = field(default=())

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "diagnostics": [diagnostic_dict(d) for d in self.diagnostics],
        }


def load_recipe(
    path: PathLike,
    params: Mapping[str, object] | None = None,
    param_files: Iterable[PathLike] = (),
    *,
    check_inputs: bool = True,
) -> Recipe:
    """Load and check a recipe, params bound. Raises RecipeError listing every problem.

    By default every step is also rendered with placeholder outputs and the local image inputs
    are inspected, so a recipe that loads will not fail later on a bad parameter or input
    file (outputs of steps are the runner's to check). ``check_inputs=False`` stops after the
    static checks (schema, params, templates, graph). Warnings are in ``recipe.warnings``.
    """
    recipe, diagnostics = _load(path, params, param_files)
    if recipe is None:
        raise RecipeError(diagnostics)
    if not check_inputs:
        return recipe
    _, problems = check_rendering(recipe)
    if any(d.severity == "error" for d in problems):
        raise RecipeError(sorted([*diagnostics, *problems]))
    return replace(recipe, warnings=tuple(sorted([*recipe.warnings, *problems])))


def validate_recipe(
    path: PathLike,
    params: Mapping[str, object] | None = None,
    param_files: Iterable[PathLike] = (),
) -> ValidationReport:
    """Every check short of sending a request: schema, templates, graph, params, rendering with
    placeholder outputs, local image inputs. Never raises RecipeError: problems are in the report.
    """
    file = os.fspath(path)
    try:
        recipe, diagnostics = _load(path, params, param_files)
    except RecipeError as exc:
        return ValidationReport(file, tuple(sorted(exc.diagnostics)))
    if recipe is None:
        return ValidationReport(file, tuple(diagnostics))
    _, problems = check_rendering(recipe)
    return ValidationReport(file, tuple(sorted([*diagnostics, *problems])))


def plan_recipe(
    path: PathLike,
    params: Mapping[str, object] | None = None,
    param_files: Iterable[PathLike] = (),
    *,
    quota: Quota | None = None,
) -> Plan:
    """Validate, then plan: levels, billed images, cost, shortest wall time. Raises RecipeError."""
    # make_plan renders and inspects inputs itself: load without doing it twice.
    recipe = load_recipe(path, params, param_files, check_inputs=False)
    return make_plan(recipe, quota or Quota())


def _load(
    path: PathLike,
    params: Mapping[str, object] | None,
    param_files: Iterable[PathLike],
) -> tuple[Recipe | None, list[Diagnostic]]:
    file = os.fspath(path)
    given: list[GivenValue] = []
    for params_file in param_files:
        given.extend(given_from_file(Path(params_file)))
    given.extend(given_from_mapping(params or {}, Path.cwd()))
    doc = load_file(Path(file), file)
    if not isinstance(doc.data, dict):
        raise RecipeError(
            [Diagnostic(file, 1, 1, "", "a recipe must be a mapping (version:, steps:, ...)")]
        )
    return build_recipe(doc, Path(file), given)
