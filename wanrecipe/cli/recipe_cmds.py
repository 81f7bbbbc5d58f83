"""validate, plan, graph, schema: the commands that check a recipe without running it."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import click

from .. import api, wire
from ..errors import RecipeError
from ..executor import preview
from ..executor.identity import realm_of
from ..recipe import graph_export
from ..recipe.plan import Quota, format_plan
from ..recipe.schema import schema_text
from . import EXIT_INVALID, main
from .blobs_option import blobs_option
from .common import echo_diagnostics, param_option, params_file_option, parse_params, shown_path
from .state_opt import state_option


@main.command(short_help="Check recipes without running them.")
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False))
@param_option
@params_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")
def validate(
    recipes: tuple[str, ...],
    param_items: tuple[str, ...],
    params_files: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check recipes without running them: schema, templates, graph, params, local images.

    Prints every problem as file:line:col to stderr. Exit 0 when all are valid (warnings
    allowed), 2 otherwise.

    \b
    Example:
      wanrecipe validate recipes/*.yaml
      wanrecipe validate recipes/old-photo.yaml -p factor=4 --json
    """
    params = parse_params(param_items)
    reports = [api.validate_recipe(path, params, params_files) for path in recipes]
    for report in reports:
        echo_diagnostics(report.diagnostics)
    ok = all(r.ok for r in reports)
    if as_json:
        click.echo(json.dumps({"ok": ok, "recipes": [r.to_dict() for r in reports]}, indent=2))
    else:
        for report in reports:
            if report.ok:
                warned = len(report.warnings)
                note = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
                click.echo(f"{report.file}: ok{note}")
        failed = sum(1 for r in reports if not r.ok)
        if failed:
            errors = sum(len(r.errors) for r in reports)
            click.echo(
                f"{errors} error{'s' if errors != 1 else ''} in {failed} "
                f"recipe{'s' if failed != 1 else ''}",
                err=True,
            )
    if not ok:
        raise SystemExit(EXIT_INVALID)


@main.command(short_help="Show steps, billed images, cost and wall time; run nothing.")
@click.argument("recipe", type=click.Path(dir_okay=False))
@param_option
@params_file_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@click.option(
    "--submit-rps", type=click.FloatRange(min=0, min_open=True), default=Quota.submit_rps,
    show_default=True, help="Submissions per second the account allows.",
)  # fmt: skip
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=Quota.concurrency, show_default=True,
    help="Tasks the account runs at once.",
)  # fmt: skip
@click.option(
    "--task-seconds", type=click.FloatRange(min=0), default=Quota.task_seconds,
    show_default=True, help="Assumed duration of one task.",
)  # fmt: skip
@click.option(
    "--state-dir", type=click.Path(file_okay=False), default=None,
    help="Mark each step cached / re-attach / will run from this state directory and count "
    "only what will be billed (default: .wanrecipe/ beside the recipe, or "
    "WANRECIPE_STATE_DIR, when something has run there).",
)  # fmt: skip
@partial(blobs_option, expose=False)  # read by _cache_marks from the click context
@state_option
@click.option(
    "--backend", type=click.Choice(["local", "dashscope"]), default=None,
    help="Which results count as cached: the emulator's or the service's (default local; "
    "env WANRECIPE_BACKEND).",
)  # fmt: skip
@click.option(
    "--max-cost", "max_cost", default=None, metavar="USD",
    help="Refuse (exit 3) a plan whose cost is over USD (default: the recipe's budget).",
)  # fmt: skip
@click.option(
    "--batch", "batch_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    metavar="FILE", help="Plan a batch: one run per row of FILE (see run --batch).",
)  # fmt: skip
@click.option("--each", default=None, metavar="NAME=GLOB", help="Plan one run per file.")
@click.option("--rows", "rows_spec", default=None, metavar="A:B", help="With --batch/--each.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="With --batch/--each.")
def plan(
    recipe: str,
    param_items: tuple[str, ...],
    params_files: tuple[str, ...],
    as_json: bool,
    submit_rps: float,
    concurrency: int,
    task_seconds: float,
    state_dir: str | None,
    backend: str | None,
    max_cost: str | None = None,
    state: str | None = None,
    batch_file: Path | None = None,
    each: str | None = None,
    rows_spec: str | None = None,
    limit: int | None = None,
) -> None:
    """Show what a run would do: steps by dependency level, billed images, cost, wall time.

    Nothing is sent. The wall time is the shortest the quota allows (submissions per second,
    tasks at once, typical task duration).

    \b
    Example:
      wanrecipe plan recipes/old-photo.yaml -p factor=4
      wanrecipe plan recipes/style-fanout.yaml --json
      wanrecipe plan recipes/batch-stylize.yaml --batch recipes/batch-stylize.csv --max-cost 1
    """
    params = parse_params(param_items)
    quota = Quota(submit_rps=submit_rps, concurrency=concurrency, task_seconds=task_seconds)
    if batch_file is not None or each is not None:
        from .batch_run import plan_batch

        source = (batch_file, each, rows_spec, limit)
        plan_batch(Path(recipe), params, params_files, source, quota, max_cost, as_json)
        return
    try:
        result = api.plan_recipe(recipe, params, params_files, quota=quota)
    except RecipeError as exc:
        echo_diagnostics(exc.diagnostics)
        raise SystemExit(EXIT_INVALID) from None
    echo_diagnostics(result.warnings)
    cache = _cache_marks(result.recipe, state_dir, backend, state)
    if as_json:
        document = result.to_dict()
        if cache is not None:
            _add_marks(document, *cache)
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(format_plan(result))
        if cache is not None:
            where = cache[1] if isinstance(cache[1], str) else shown_path(cache[1])
            click.echo(preview.format_marks(cache[0], where))
    _check_budget(result, max_cost)


def _check_budget(result: Any, max_cost: str | None) -> None:
    """A plan over the budget (``--max-cost`` or ``budget: {max_usd}``) exits 3."""
    from ..batch.graph import budget_of
    from ..errors import UsageError
    from . import EXIT_INTERRUPTED

    try:
        budget = budget_of(result.recipe, max_cost)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    if budget is not None and result.cost_usd > budget:
        click.echo(
            f"error: the plan costs ${result.cost_usd:.4f}, over the budget of ${budget} by "
            f"${result.cost_usd - budget:.4f}\n"
            "  hint: raise --max-cost (or budget: {max_usd} in the recipe), or ask for fewer "
            "images (n) or steps",
            err=True,
        )
        raise SystemExit(EXIT_INTERRUPTED)


def _cache_marks(
    recipe: Any, state_dir: str | None, backend: str | None, state: str | None = None
) -> Any:
    """The cache marks of each step from --state / --state-dir, or from the recipe's default
    state when something has run there (nothing has run yet otherwise: every step will run,
    and the plan keeps its plain shape). A plan never creates state."""
    import os
    from pathlib import Path

    from ..errors import StoreError
    from ..runner import default_state_dir
    from ..store import open_state, parse_state
    from .state_opt import chosen_state

    given = chosen_state(state, Path(state_dir) if state_dir is not None else None)
    spec = parse_state(given, default_dir=default_state_dir(recipe.path))
    explicit = given is not None or bool(os.environ.get("WANRECIPE_STATE"))
    if spec.kind == "dir" and not (spec.path / "state.db").exists():
        if not explicit:
            return None
        raise click.UsageError(f"no state directory at {spec.path} (nothing has run there yet)")
    kind = backend or os.environ.get("WANRECIPE_BACKEND") or "local"
    blobs = click.get_current_context().meta.get("blobs")
    try:
        with open_state(spec, default_dir=spec.path, create=False, blobs=blobs) as opened:
            marks = preview.cache_preview(recipe, opened.journal, realm_of(kind))
    except StoreError as exc:
        if "nothing has run there yet" in str(exc):
            raise click.UsageError(str(exc)) from exc
        raise click.ClickException(str(exc)) from exc
    return marks, spec.path if spec.kind == "dir" else spec.shown


def _add_marks(document: dict[str, Any], marks: Any, path: Any) -> None:
    """``plan --json`` with a cache: each step's mark, and only what will be billed."""
    for level in document["levels"]:
        for step in level:
            step["cache"] = preview.mark_dict(marks[step["id"]])
    images = preview.billed(marks)
    document["state_dir"] = str(path)
    document["billed_images_without_cache"] = document["billed_images"]
    document["billed_images"] = images
    document["cost_usd"] = str(wire.PRICE_PER_IMAGE_USD * images)


@main.command(short_help="Print the step graph (Mermaid or dot).")
@click.argument("recipe", type=click.Path(dir_okay=False))
@param_option
@params_file_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="Mermaid (renders on GitHub) or Graphviz dot.",
)
def graph(
    recipe: str, param_items: tuple[str, ...], params_files: tuple[str, ...], fmt: str
) -> None:
    """Print the step graph. Solid edges come from template references, dashed ones from needs.

    A foreach:/matrix: step is drawn once with its multiplicity (styles ×6); skipped steps are
    dashed.

    \b
    Example:
      wanrecipe graph recipes/old-photo.yaml
      wanrecipe graph recipes/style-fanout.yaml --format dot | dot -Tsvg > graph.svg
    """
    try:
        loaded = api.load_recipe(
            recipe, parse_params(param_items), params_files, check_inputs=False
        )
    except RecipeError as exc:
        echo_diagnostics(exc.diagnostics)
        raise SystemExit(EXIT_INVALID) from None
    render: Any = graph_export.to_mermaid if fmt == "mermaid" else graph_export.to_dot
    click.echo(render(loaded), nl=False)


@main.command(short_help="Print the recipe JSON Schema.")
def schema() -> None:
    """Print the recipe JSON Schema (draft 2020-12).

    Editors with yaml-language-server complete and explain recipe fields when a recipe starts
    with a modeline pointing at it.

    \b
    Example:
      wanrecipe schema > recipe.schema.json
      # first line of a recipe:
      # yaml-language-server: $schema=./recipe.schema.json
    """
    click.echo(schema_text(), nl=False)
