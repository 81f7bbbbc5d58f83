"""run: execute a recipe."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from .. import api, wire
from ..errors import RecipeError, StoreError, UsageError
from ..executor.polling import PollPolicy
from ..executor.quota import Quota
from ..executor.scheduler import RunOptions
from ..report.lock import check_lock, lock_path, read_lock, write_lock
from ..report.progress import JsonLines, LiveTable, PlainLines
from ..report.record import RunRecord
from ..runner import (
    choose_backend,
    default_run_dir,
    default_state_dir,
    execute,
    start_engines_early,
    with_dependants,
)
from . import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_STEP_FAILED, main
from .blobs_option import blobs_option
from .common import echo_diagnostics, param_option, params_file_option, parse_params, shown_path
from .console import StderrConsole
from .finish import lock_summary_exit
from .run_options import batch_options, require_consent, resolve_budget
from .state_opt import chosen_state, state_option
from .warm import WarmOnFirstSubmit


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@param_option
@params_file_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory (default: runs/<recipe name>/<UTC timestamp>).",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "dashscope"]),
    default=None,
    help="local: the embedded emulator, free (default; env WANRECIPE_BACKEND). "
    "dashscope: the paid service, needs DASHSCOPE_API_KEY.",
)
@click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="Any server that speaks the API, e.g. http://127.0.0.1:8080/api/v1 from "
    "`wanrecipe serve` (env WANRECIPE_BASE_URL; with --backend dashscope also "
    "DASHSCOPE_HTTP_BASE_URL).",
)
@click.option(
    "--region",
    type=click.Choice(sorted(wire.BASE_URLS)),
    default=None,
    help="DashScope region for --backend dashscope (default cn-beijing).",
)
@click.option(
    "--rps",
    type=click.FloatRange(min=0.01),
    default=wire.SUBMIT_RPS,
    show_default=True,
    help="Submissions per second the client allows itself.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=wire.CONCURRENCY,
    show_default=True,
    help="Tasks in flight at once.",
)
@click.option(
    "--query-qps",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Task queries per second, for the whole run.",
)
@click.option("--fail-fast", is_flag=True, help="Stop submitting at the first failed step.")
@click.option(
    "--open",
    "open_report",
    is_flag=True,
    expose_value=False,  # read by report_after_run from the click context
    callback=lambda ctx, _param, value: ctx.meta.update(open_report=value),
    help="Open the run's report.html in a web browser at the end.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the journal and stored images live (default: .wanrecipe/ beside the "
    "recipe; env WANRECIPE_STATE_DIR).",
)
@state_option
@blobs_option
@click.option(
    "--no-cache",
    is_flag=True,
    help="Ignore stored results: run every step again (new results are still stored).",
)
@click.option(
    "--force",
    "force_steps",
    multiple=True,
    metavar="STEP",
    help="Redo STEP and every step that depends on it, whatever is stored. Repeatable.",
)
@click.option(
    "--locked",
    is_flag=True,
    help="Replay the seeds and parameters of <recipe>.lock exactly; refuse (exit 2, nothing "
    "sent) if the recipe no longer matches it.",
)
@click.option(
    "--resubmit-lost",
    is_flag=True,
    help="When a submit got no answer and the task list cannot tell whether it created a "
    "task, submit again anyway (may pay twice; by default the step stops and says so).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line.")
@batch_options
def run(
    recipe: Path,
    param_items: tuple[str, ...],
    params_files: tuple[str, ...],
    out_dir: Path | None,
    backend: str | None,
    base_url: str | None,
    region: str | None,
    rps: float,
    concurrency: int,
    query_qps: float,
    fail_fast: bool,
    state_dir: Path | None,
    state: str | None,
    blobs: str | None,
    no_cache: bool,
    force_steps: tuple[str, ...],
    locked: bool,
    resubmit_lost: bool,
    as_json: bool,
    batch_file: Path | None = None,
    each: str | None = None,
    rows_spec: str | None = None,
    limit: int | None = None,
    max_cost: str | None = None,
    yes: bool = False,
) -> None:
    """Run RECIPE: every step, each output feeding the next.

    With no flags it runs on the embedded emulator: free and offline. Results land in the run
    directory (<step>.png, <step>-2.png, ..., run.json).

    \b
    Examples:
      wanrecipe run recipes/old-photo.yaml
      wanrecipe run recipes/old-photo.yaml -p factor=4 --out out/
      wanrecipe run recipes/old-photo.yaml --base-url http://127.0.0.1:8080/api/v1
      DASHSCOPE_API_KEY=sk-... wanrecipe run recipes/old-photo.yaml --backend dashscope
      wanrecipe run recipes/batch-restore.yaml --batch recipes/batch-restore.csv
      wanrecipe run recipes/old-photo.yaml --each photo='photos/*.jpg' --max-cost 2

    Every run that finishes a step writes <recipe>.lock beside the recipe (seeds, inputs,
    outputs, task ids); --locked replays it.

    Exit codes: 0 all steps done, 1 a step failed (independent steps still ran),
    2 invalid recipe or usage (nothing was sent), 3 interrupted or over budget (finished
    work kept).

    --batch FILE / --each NAME=GLOB run the recipe once per row, every row in one scheduler
    (one quota, one cache), outputs in <run dir>/<row key>/ (docs/batch.md).
    """
    err: Any = StderrConsole()
    try:
        choice = choose_backend(backend, base_url=base_url, region=region)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    start_engines_early(choice)  # the embedded emulator's workers start while we check
    quota = Quota(submit_rps=rps, concurrency=concurrency, query_qps=query_qps)
    state_spec = chosen_state(state, state_dir)
    if batch_file is not None or each is not None:
        if locked:
            raise click.UsageError("--locked replays one run's lock file: not with --batch/--each")
        from .batch_run import run_batch_command  # the batch machinery: only for a batch

        run_batch_command(
            err, recipe, choice=choice, params=parse_params(param_items),
            params_files=params_files, batch_file=batch_file, each=each, rows_spec=rows_spec,
            limit=limit, max_cost=max_cost, yes=yes, out_dir=out_dir, state_dir=state_spec,
            blobs=blobs,
            options=RunOptions(
                fail_fast=fail_fast, no_cache=no_cache, quota=quota,
                lost_submit="resubmit" if resubmit_lost else "stop",
            ),
            force_steps=force_steps, as_json=as_json,
        )  # fmt: skip
        return
    if rows_spec is not None or limit is not None:
        raise click.UsageError("--rows and --limit pick rows of --batch FILE or --each NAME=GLOB")
    loaded = _load_checked(recipe, parse_params(param_items), params_files)
    max_usd = resolve_budget(loaded, max_cost)
    # The estimate renders every step again: only a paid run can need consent.
    estimate = _estimate(loaded) if choice.kind == "dashscope" else Decimal(0)
    require_consent(err, choice, estimate, max_usd, yes)
    run_dir = out_dir or default_run_dir(loaded.name)
    try:
        force = with_dependants(loaded, force_steps)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    options = RunOptions(
        no_cache=no_cache,
        force=force,
        locked_seeds=_locked_seeds(loaded) if locked else {},
        fail_fast=fail_fast,
        quota=quota,
        poll=PollPolicy(),
        max_usd=max_usd,
        lost_submit="resubmit" if resubmit_lost else "stop",
    )
    if as_json:
        sink: Any = JsonLines(sys.stdout)
    elif sys.stderr.isatty():
        err.print(_backend_line(choice.kind, choice.label))
        sink = LiveTable(err.console, {s.id: s.function for s in loaded.steps})
    else:
        # Plain text, no markup: echoed without rich (it is loaded for the summary).
        click.echo(_backend_line(choice.kind, choice.label), err=True)
        sink = PlainLines(sys.stderr)
    try:
        state_path = state_spec
        record = asyncio.run(
            execute(
                loaded,
                backend=choice,
                run_dir=run_dir,
                options=options,
                on_event=WarmOnFirstSubmit(sink),
                handle_signals=True,
                state_dir=state_path,
                blobs=blobs,
            )
        )
    except StoreError as exc:  # the state cannot be opened (nothing was sent)
        raise click.ClickException(str(exc)) from None
    finally:
        sink.close()  # also writes what a buffered sink still holds
        from .report_cmds import report_after_run  # the report, also after a failure

        report_after_run(run_dir, err, recipe=loaded)

    def summary() -> None:
        _summary(err, record)
        if record.status == "budget":
            err.print(_budget_line(loaded, record, max_usd))

    lock_summary_exit(
        err,
        state_path,
        lambda journal: write_lock(loaded, record, journal),
        as_json=as_json,
        summary=summary,
        code=_exit_code(record),
        default_dir=default_state_dir(loaded.path),
        blobs=blobs,
    )


def _locked_seeds(recipe: Any) -> dict[str, int]:
    """The lock's seeds, after checking that the recipe still matches the lock: a mismatch
    exits 2 before any request, naming each step and what differs."""
    path = lock_path(recipe.path)
    try:
        lock = read_lock(path)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    problems = check_lock(recipe, lock)
    if problems:
        click.echo(f"error: {recipe.file} no longer matches {path.name}:", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        click.echo(
            "  hint: run without --locked to run the recipe as it is now (and rewrite the lock)",
            err=True,
        )
        raise SystemExit(EXIT_INVALID)
    return lock.seeds


def _load_checked(path: Path, params: dict[str, object], files: tuple[str, ...]) -> Any:
    """Every check before the first request, once: a recipe that would fail at step 5 for a
    bad parameter or input fails here, before step 1 spends money."""
    try:
        recipe = api.load_recipe(path, params, files)
    except RecipeError as exc:
        echo_diagnostics(exc.diagnostics)
        raise SystemExit(EXIT_INVALID) from exc
    echo_diagnostics(recipe.warnings)
    return recipe


def _backend_line(kind: str, label: str) -> str:
    if kind == "local":
        return "backend: embedded emulator on 127.0.0.1 (free, offline)"
    if kind == "dashscope":
        return f"backend: DashScope ({label}): paid, ${wire.PRICE_PER_IMAGE_USD} per image"
    return f"backend: {label}"


def _cost(record: RunRecord) -> str:
    """What the run cost: money only where it was spent (DashScope); an emulator's images are
    free, and priced as DashScope would have billed them."""
    images = record.images_billed
    kind, _, _ = record.backend.partition(":")
    counted = f"{images} image{'s' if images != 1 else ''}"
    if images == 0 and record.steps and all(s.state == "cached" for s in record.steps.values()):
        counted += " (every step from the cache)"
    if kind == "dashscope":
        return f"{counted} billed, ${record.cost_usd} spent on DashScope"
    priced = f"${record.cost_usd} at DashScope prices"
    if kind == "local":
        return f"{counted}, free on the embedded emulator ({priced})"
    return f"{counted} on {record.backend}, not the paid service ({priced})"


def _summary(console: Any, record: RunRecord) -> None:
    from rich.markup import escape

    lines = [
        f"run {record.status} in {record.elapsed_s or 0.0:.1f}s: {_cost(record)}; "
        f"run directory {escape(shown_path(record.run_dir))}"
    ]
    emulated: dict[str, list[str]] = {}  # one line per label, however many steps share it
    for step in record.steps.values():
        if step.state == "failed" and step.error:
            lines.append(
                f"[bold red]failed[/] {step.id}: {escape(step.error.code)}: "
                f"{escape(step.error.message)}"
            )
        elif step.state == "unavailable" and step.error:
            # The message starts "paid, result unavailable: task <id> ...".
            lines.append(f"[bold magenta]unavailable[/] {step.id}: {escape(step.error.message)}")
        elif step.state == "skipped":
            lines.append(f"[yellow]skipped[/] {step.id}: {escape(step.skipped_because or '')}")
        labels = _labels(step)
        if labels:
            emulated.setdefault(labels, []).append(step.id)
        for bad in step.failed_outputs:
            lines.append(
                f"[yellow]partial[/] {step.id}: one output failed: {escape(bad.code)}: "
                f"{escape(bad.message)}"
            )
    for labels, ids in emulated.items():
        lines.append(f"[cyan]emulated[/] {escape(_some(ids))}: {escape(labels)}")
    for name, paths in record.outputs.items():
        lines.append(f"output {name}: {escape(', '.join(paths))}")
    for warning in record.warnings:
        lines.append(f"[yellow]warning[/]: {escape(warning)}")
    console.print("\n".join(lines))


def _some(ids: list[str], shown: int = 3) -> str:
    """``a, b, c`` or, for many, ``600 steps (a, b, c, ...)``."""
    if len(ids) <= shown:
        return ", ".join(ids)
    return f"{len(ids)} steps ({', '.join(ids[:shown])}, ...)"


def _budget_line(recipe: Any, record: RunRecord, max_usd: Decimal | None) -> str:
    from ..recipe.plan import check_rendering

    rendered, _ = check_rendering(recipe)
    left = [sid for sid, s in record.steps.items() if s.state not in ("done", "cached")]
    images = sum(rendered[sid].n if sid in rendered else 1 for sid in left)
    return (
        f"[yellow]budget ${max_usd} reached[/]: {len(left)} steps left ({images} images), "
        f"which would cost ${wire.PRICE_PER_IMAGE_USD * images:.4f} more; done steps are "
        "kept and come from the cache next time"
    )


def _estimate(recipe: Any) -> Decimal:
    """The most the run can bill: every step's ``n`` at the model's price."""
    from ..recipe.plan import check_rendering

    rendered, _ = check_rendering(recipe)
    return wire.PRICE_PER_IMAGE_USD * sum(r.n for r in rendered.values())


def _labels(step: Any) -> str:
    """``placeholder, input returned unchanged`` for a step whose result is not ``real``."""
    parts = []
    for r in step.results:
        if r.fidelity is not None and r.fidelity != "real":
            text = r.fidelity + (f", {r.note}" if r.note else "")
            if r.engine:
                text += f" ({r.engine})"
            if text not in parts:
                parts.append(text)
    return "; ".join(parts)


def _exit_code(record: RunRecord) -> int:
    if record.status in ("interrupted", "budget"):
        return EXIT_INTERRUPTED
    if record.status == "failed":
        return EXIT_STEP_FAILED
    return EXIT_OK
