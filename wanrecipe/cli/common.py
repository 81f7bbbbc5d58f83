"""What several commands share: the params options and printing diagnostics."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from ..errors import Diagnostic, UsageError

param_option = click.option(
    "-p",
    "--param",
    "param_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a param (converted to its declared type). Repeatable.",
)
params_file_option = click.option(
    "--params",
    "params_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Read params from a YAML or JSON mapping. Repeatable; -p wins.",
)


def parse_params(items: Sequence[str]) -> dict[str, object]:
    from ..recipe.params import parse_assignments  # the recipe machinery: not for --help

    try:
        return dict(parse_assignments(items))
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None


def echo_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for d in diagnostics:
        click.echo(d.format(), err=True)


def shown_path(path: str | Path) -> str:
    """A path as the user should read it: relative to the working directory when it is under
    it (as run directories are printed), otherwise absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(absolute)
