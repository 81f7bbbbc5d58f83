"""The options ``run`` shares with ``run --batch`` (rows, budget, consent), and the checks on
them, without importing the batch machinery: a single run does not load it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import UsageError
from ..executor.budget import budget_of, consent_needed
from . import EXIT_INVALID

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option(
        "--batch",
        "batch_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        metavar="FILE",
        help="Run once per row of FILE (.csv, .tsv, .yaml, .json, .jsonl): columns are "
        "params, a `key` column names each row's directory.",
    ),
    click.option(
        "--each",
        "each",
        default=None,
        metavar="NAME=GLOB",
        help="Run once per file matching GLOB, as param NAME (quote it: --each "
        "photo='photos/*.jpg').",
    ),
    click.option(
        "--rows",
        "rows_spec",
        default=None,
        metavar="A:B",
        help="With --batch/--each: only rows A to B (1-based, inclusive; 3:, :10, 5).",
    ),
    click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="With --batch/--each: at most N rows (after --rows).",
    ),
    click.option(
        "--max-cost",
        "max_cost",
        default=None,
        metavar="USD",
        help="Submit nothing that would take the run (a batch: all rows) over USD; stop "
        "cleanly at it (exit 3). Overrides the recipe's budget: {max_usd}.",
    ),
    click.option(
        "--yes",
        "-y",
        "yes",
        is_flag=True,
        help="Start a paid run whose estimate is over $1 (WANRECIPE_CONFIRM_USD) without a "
        "budget, without asking.",
    ),
]


def batch_options(fn: F) -> F:
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


def resolve_budget(recipe: Any, max_cost: str | None) -> Decimal | None:
    try:
        value: Decimal | None = budget_of(recipe, max_cost)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    return value


def require_consent(
    err: Any, choice: Any, estimate: Decimal, max_usd: Decimal | None, yes: bool
) -> None:
    """On DashScope, a run over the threshold without a budget asks on a terminal and is
    refused elsewhere unless --yes. Exits 2 before any request when refused."""
    consent = consent_needed(choice.kind, estimate, max_usd)
    if not consent.needed or yes:
        return
    if sys.stdin.isatty() and sys.stderr.isatty():
        if click.confirm(f"{consent.message}. Start it?", default=False, err=True):
            return
        err.print("not started: nothing was sent")
        raise SystemExit(EXIT_INVALID)
    click.echo(
        f"error: {consent.message}; nothing was sent.\n"
        "  hint: pass --yes to start it anyway, or set a budget with --max-cost USD "
        "(or budget: {max_usd: ...} in the recipe)",
        err=True,
    )
    raise SystemExit(EXIT_INVALID)
