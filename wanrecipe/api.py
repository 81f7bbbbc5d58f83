"""The public Python API: load, validate and plan recipes, run batches (the runner adds
``run_recipe``).

``params`` values may be strings (converted to the declared type, as ``-p`` does) or already
typed values; ``param_files`` are YAML or JSON mappings applied before ``params``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Diagnostic, RecipeError
from .recipe.build import build_recipe
from .recipe.loader import load_file
from .recipe.model import Recipe
from .recipe.params import GivenValue, given_from_file, given_from_mapping
from .recipe.plan import Plan, Quota, check_rendering, diagnostic_dict, make_plan

if TYPE_CHECKING:
    from .report.batch_record import BatchRecord
    from .report.events import EventSink

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


def run_batch(
    path: PathLike,
    rows: Iterable[Any],
    *,
    params: Mapping[str, object] | None = None,
    param_files: Iterable[PathLike] = (),
    backend: Any = None,
    run_dir: PathLike | None = None,
    options: Any = None,
    on_event: EventSink | None = None,
    state_dir: PathLike | None = None,
    max_usd: Any = None,
    state: str | None = None,
    blobs: str | None = None,
) -> BatchRecord:
    """Run the recipe once per row, all rows in one scheduler; return the batch record.

    ``rows``: ``recipe.rows.load_rows(...)`` rows, or mappings of param values (a ``key``
    entry names the row's directory). ``params`` apply to every row (a row's own values win).
    ``state``: a state directory or a ``postgresql://`` URL, as ``--state`` (wins over
    ``state_dir``).
    ``max_usd`` (or the recipe's ``budget: {max_usd}``) caps what the batch may bill. Raises
    RecipeError (every row's problems, nothing sent) or UsageError.
    """
    import asyncio

    from .batch import BatchGraph, as_rows, execute_batch, load_rows_recipes
    from .batch.graph import budget_of
    from .report.events import discard
    from .runner import BackendChoice, choose_backend, default_run_dir

    batch_rows = as_rows(rows)
    loaded = load_rows_recipes(Path(path), batch_rows, load_recipe, params, list(param_files))
    graph = BatchGraph(loaded[0].recipe.path, loaded)
    choice = backend if isinstance(backend, BackendChoice) else choose_backend(backend)
    out = Path(run_dir) if run_dir is not None else default_run_dir(loaded[0].recipe.name)
    return asyncio.run(
        execute_batch(
            graph,
            backend=choice,
            run_dir=out,
            options=options,
            on_event=on_event or discard,
            state_dir=state if state is not None else state_dir,
            max_usd=budget_of(loaded[0].recipe, max_usd),
            blobs=blobs,
        )
    )
