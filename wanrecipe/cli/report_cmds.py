"""report, diff: the HTML pages of runs (and what ``run`` calls to write its report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import EXIT_INVALID, main

_open_option = click.option(
    "--open", "open_browser", is_flag=True, help="Open the page in a web browser."
)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@_open_option
def report(run_dir: Path, open_browser: bool) -> None:
    """Rebuild RUN_DIR/report.html from RUN_DIR/run.json.

    The page shows the recipe's params and totals, the step graph, and for every step its
    inputs and outputs (thumbnails linking to the files), prompt, parameters, seed, task,
    times, cost and failures; the emulator's engine labels show as badges. For a batch
    directory it writes the grid and every row's page. Self-contained: zip the folder or
    open it from file://.

    \b
    Examples:
      wanrecipe report runs/old-photo/20260101-120000
      wanrecipe report runs/old-photo/20260101-120000 --open
    """
    from ..errors import UsageError
    from ..report.html import write_report

    try:
        path = write_report(run_dir)
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    click.echo(str(path))
    if open_browser:
        _open(path)


@main.command()
@click.argument("run_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the page (default: RUN_B/diff-<RUN_A's name>.html).",
)
@_open_option
def diff(run_a: Path, run_b: Path, out: Path | None, open_browser: bool) -> None:
    """Compare two runs of a recipe on one page.

    Changed params, prompts, parameters and seeds are highlighted; each step's outputs stand
    side by side with a pixel-difference thumbnail where both runs have the image.

    \b
    Examples:
      wanrecipe diff runs/old-photo/20260101-120000 runs/old-photo/20260102-090000
      wanrecipe diff RUN_A RUN_B --out compare.html --open
    """
    from ..errors import UsageError
    from ..report.html import write_diff

    try:
        path = write_diff(run_a, run_b, out)
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_INVALID) from None
    click.echo(str(path))
    if open_browser:
        _open(path)


def report_after_run(
    run_dir: Path, console: Any, open_browser: bool | None = None, *, recipe: Any = None
) -> Path | None:
    """What ``run`` does at the end (also after a failure or an interruption): write the
    report, print its path, open it if asked (``open_browser``, else ``run --open`` from the
    click context). A report problem never fails the run. ``recipe``: the run's recipe as
    loaded (not read again)."""
    from rich.markup import escape

    if open_browser is None:
        ctx = click.get_current_context(silent=True)
        open_browser = bool(ctx.meta.get("open_report")) if ctx is not None else False

    from ..errors import WanRecipeError
    from ..report.html import write_report

    if not (run_dir / "run.json").is_file():
        return None  # the run stopped before it had a record: nothing to show
    try:
        path = write_report(run_dir, recipe=recipe)
    except (WanRecipeError, OSError, ValueError) as exc:
        console.print(f"[yellow]warning[/]: the report was not written: {escape(str(exc))}")
        return None
    console.print(f"report {escape(str(path))}")
    if open_browser:
        _open(path)
    return path


def _open(path: Path) -> None:
    import webbrowser

    if not webbrowser.open(path.resolve().as_uri()):
        click.echo("note: no web browser found to open it", err=True)
