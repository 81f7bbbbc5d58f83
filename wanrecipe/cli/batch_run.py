"""``run --batch FILE | --each NAME=GLOB``: one recipe over many rows; budgets and consent."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from .. import api, wire
from ..batch import BatchGraph, as_rows, execute_batch, load_rows_recipes
from ..batch.graph import node_id
from ..batch.lock import write_batch_lock
from ..errors import RecipeError, StoreError, UsageError
from ..redact import redact_text
from ..report.batch_progress import BatchBar, BatchLines, BatchState
from ..report.batch_record import BatchRecord
from ..report.progress import JsonLines
from ..runner import BackendChoice, default_run_dir, default_state_dir, load_durations
from ..store import parse_state
from . import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_STEP_FAILED
from .common import echo_diagnostics
from .finish import lock_summary_exit
from .run_options import require_consent, resolve_budget


def run_batch_command(
    err: Console,
    recipe: Path,
    *,
    choice: BackendChoice,
    params: dict[str, object],
    params_files: tuple[str, ...],
    batch_file: Path | None,
    each: str | None,
    rows_spec: str | None,
    limit: int | None,
    max_cost: str | None,
    yes: bool,
    out_dir: Path | None,
    state_dir: Path | str | None,
    options: Any,
    force_steps: tuple[str, ...],
    blobs: str | None = None,
    as_json: bool,
) -> None:
    """Load and check every row (nothing is sent if any row is bad), then run the batch."""
    from dataclasses import replace

    from ..runner import with_dependants

    graph = load_batch(recipe, params, params_files, batch_file, each, rows_spec, limit)
    loaded = graph.rows
    first = loaded[0].recipe
    echo_diagnostics(first.warnings)
    if force_steps:
        try:
            steps = with_dependants(first, force_steps)
        except UsageError as exc:
            raise click.UsageError(str(exc)) from exc
        force = frozenset(node_id(r.key, s) for r in loaded for s in steps)
        options = replace(options, force=force)
    max_usd = resolve_budget(first, max_cost)
    estimate = wire.PRICE_PER_IMAGE_USD * graph.planned_images
    require_consent(err, choice, estimate, max_usd, yes)
    state_path = state_dir
    run_dir = out_dir or default_run_dir(first.name)
    local = parse_state(state_path, default_dir=default_state_dir(first.path)).path
    durations = load_durations(local, choice.label, options.poll)
    progress = BatchState(
        len(loaded),
        {node_id(n.row, n.step): n.function for n in graph.steps},
        expected={n.function: durations.expected(n.function) for n in graph.steps},
        concurrency=options.quota.concurrency,
        submit_rps=options.quota.submit_rps,
    )
    if as_json:
        sink: Any = JsonLines(sys.stdout)
    else:
        err.print(_backend_line(choice))
        err.print(
            f"batch: {len(loaded)} rows x {len(first.steps)} steps, up to "
            f"{graph.planned_images} images (${estimate:.4f})"
            + (f", budget ${max_usd}" if max_usd is not None else "")
        )
        if sys.stderr.isatty():
            sink = BatchBar(err, progress, paid=choice.kind == "dashscope")
        else:
            sink = BatchLines(sys.stderr, progress)
    try:
        record = asyncio.run(
            execute_batch(
                graph,
                backend=choice,
                run_dir=run_dir,
                options=options,
                on_event=sink,
                handle_signals=True,
                state_dir=state_path,
                max_usd=max_usd,
                blobs=blobs,
            )
        )
    except StoreError as exc:  # the state cannot be opened (nothing was sent)
        raise click.ClickException(str(exc)) from None
    finally:
        sink.close()
        from .report_cmds import report_after_run  # the batch grid, also after a failure

        report_after_run(run_dir, err)
    lock_summary_exit(
        err,
        state_path,
        lambda journal: write_batch_lock(graph, record, journal),
        as_json=as_json,
        summary=lambda: batch_summary(err, record),
        code=batch_exit_code(record),
        default_dir=default_state_dir(first.path),
        blobs=blobs,
        show=str,
    )


def _backend_line(choice: BackendChoice) -> str:
    if choice.kind == "local":
        return "backend: embedded emulator on 127.0.0.1 (free, offline)"
    if choice.kind == "dashscope":
        return f"backend: DashScope ({choice.label}): paid, ${wire.PRICE_PER_IMAGE_USD} per image"
    return f"backend: {choice.label}"


def cost_phrase(images: int, cost: Decimal, paid: bool) -> str:
    if paid:
        return f"{images} images billed, ${cost:.4f} spent"
    return f"{images} images, ${cost:.4f} at DashScope prices (nothing spent: emulator)"


def load_batch(
    recipe: Path,
    params: dict[str, object],
    params_files: tuple[str, ...],
    batch_file: Path | None,
    each: str | None,
    rows_spec: str | None,
    limit: int | None,
) -> BatchGraph:
    """Every row loaded and checked: exits 2 (nothing sent) listing every problem."""
    from ..recipe.rows import each_rows, load_rows, param_declarations

    if batch_file is not None and each is not None:
        raise click.UsageError("give --batch FILE or --each NAME=GLOB, not both")
    supplied = set(params)
    try:
        decls = param_declarations(recipe)
        if params_files:
            from ..recipe.params import given_from_file

            for file in params_files:
                supplied.update(g.name for g in given_from_file(Path(file)))
        if batch_file is not None:
            rows = load_rows(decls, batch_file, rows=rows_spec, limit=limit, supplied=supplied)
        else:
            assert each is not None
            rows = each_rows(decls, each, rows=rows_spec, limit=limit, supplied=supplied)
        loaded = load_rows_recipes(recipe, as_rows(rows), api.load_recipe, params, params_files)
    except RecipeError as exc:
        echo_diagnostics(exc.diagnostics)
        raise SystemExit(EXIT_INVALID) from None
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    return BatchGraph(loaded[0].recipe.path, loaded)


def plan_batch(
    recipe: Path,
    params: dict[str, object],
    params_files: tuple[str, ...],
    source: tuple[Path | None, str | None, str | None, int | None],
    quota: Any,
    max_cost: str | None,
    as_json: bool,
) -> None:
    """``plan --batch/--each``: every row checked; the batch's images, cost and wall time.
    A batch over its budget exits 3. ``source``: (batch file, each, rows, limit)."""
    import json

    from ..recipe.plan import estimate_wall_time

    graph = load_batch(recipe, params, params_files, *source)
    first = graph.rows[0].recipe
    images = graph.planned_images
    cost = wire.PRICE_PER_IMAGE_USD * images
    wall = estimate_wall_time(
        {n.id: graph.deps(n.id) for n in graph.steps},
        submit_rps=quota.submit_rps,
        concurrency=quota.concurrency,
        task_seconds=quota.task_seconds,
    )
    if as_json:
        rows = [
            {"key": r.key, "images": sum(r.images.values()),
             "params": {k: redact_text(str(v)) for k, v in r.row.params.items()}}
            for r in graph.rows
        ]  # fmt: skip
        document = {"recipe": first.file, "name": first.name, "rows": rows,
                    "steps": len(graph.nodes), "billed_images": images,
                    "cost_usd": str(cost), "wall_seconds": round(wall, 3)}  # fmt: skip
        click.echo(json.dumps(document, indent=2))
    else:
        for r in graph.rows:
            n = sum(r.images.values())
            click.echo(f"  row {r.key:<30} {len(r.recipe.steps)} steps, {n} images")
        click.echo(
            f"batch: {len(graph.rows)} rows x {len(first.steps)} steps = {len(graph.nodes)} "
            f"tasks, {images} billed images, est. ${cost:.6f} at "
            f"${wire.PRICE_PER_IMAGE_USD}/image"
        )
        click.echo(
            f"shortest wall time: {wall:.0f}s ({quota.submit_rps:g} submits/s, "
            f"{quota.concurrency} tasks at once, ~{quota.task_seconds:g}s per task)"
        )
    max_usd = resolve_budget(first, max_cost)
    if max_usd is not None and cost > max_usd:
        click.echo(
            f"error: the batch costs ${cost:.4f}, over the budget of ${max_usd} by "
            f"${cost - max_usd:.4f}\n"
            "  hint: raise --max-cost (or budget: {max_usd} in the recipe), or pick fewer "
            "rows (--rows A:B, --limit N)",
            err=True,
        )
        raise SystemExit(EXIT_INTERRUPTED)


def batch_summary(console: Console, record: BatchRecord) -> None:
    console.print(
        f"batch {record.status} in {record.elapsed_s or 0:.1f}s: {record.count('ok')}/"
        f"{len(record.rows)} rows ok, {record.count('failed')} failed; "
        f"{cost_phrase(record.images_billed, record.cost_usd, record.paid)}; "
        f"run directory {escape(record.run_dir)}"
    )
    for row in record.rows:
        if row.status == "failed":
            console.print(f"[bold red]failed[/] row {escape(row.key)}: {escape(row.error or '')}")
    not_done = [r for r in record.rows if r.status in ("skipped", "interrupted")]
    left = len(not_done) if record.left_rows is None else record.left_rows
    if record.status in ("budget", "interrupted") and left:
        why = "the budget was reached" if record.status == "budget" else "interrupted"
        again = (
            # The batch's budget keeps its tally across runs: the same cap would stop again.
            "raise --max-cost by that much and run again to finish them"
            if record.status == "budget"
            else "run the same command again to finish them"
        )
        console.print(
            f"[yellow]{why}[/]: {left} rows left ({record.left_images} images), "
            f"which would cost ${record.left_usd:.4f} more; {again} (done rows come from "
            "the cache)"
        )


def batch_exit_code(record: BatchRecord) -> int:
    if record.status in ("budget", "interrupted"):
        return EXIT_INTERRUPTED
    if record.status == "failed":
        return EXIT_STEP_FAILED
    return EXIT_OK
