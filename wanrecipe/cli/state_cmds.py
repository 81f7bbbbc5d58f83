"""verify, cache ls|gc|clear: the commands that look after stored results."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import click

from .. import api
from ..errors import RecipeError, UsageError, WanRecipeError
from ..executor.preview import cache_preview
from ..report.lock import Lock, lock_path, read_lock
from ..runner import default_state_dir
from ..store import Attempt, StateDir, sha256_file
from . import EXIT_INVALID, main
from .common import echo_diagnostics, shown_path

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The state directory (default: .wanrecipe/ beside the recipe, or "
    "WANRECIPE_STATE_DIR, or ./.wanrecipe without a recipe).",
)


def _state_path(state_dir: Path | None, recipes: tuple[Path, ...] = ()) -> Path:
    if state_dir is not None:
        return state_dir
    if recipes:
        return default_state_dir(recipes[0])
    return default_state_dir(Path.cwd() / "recipe.yaml")


def _open(path: Path, *, must_exist: bool = True) -> StateDir:
    if must_exist and not (path / "state.db").exists():
        raise click.UsageError(
            f"no state directory at {shown_path(path)} (nothing has run there yet)"
        )
    try:
        return StateDir.open(path)
    except WanRecipeError as exc:
        raise click.ClickException(str(exc)) from exc


def _load(path: Path) -> Any:
    try:
        return api.load_recipe(path)
    except RecipeError as exc:
        echo_diagnostics(exc.diagnostics)
        raise SystemExit(EXIT_INVALID) from None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


# -- verify --------------------------------------------------------------------------------


@main.command(short_help="Check stored outputs against the lock file.")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also check the files of this run directory.",
)
@_state_dir_option
def verify(recipe: Path, run_dir: Path | None, state_dir: Path | None) -> None:
    """Check every output the lock file names: in the image store (and in --run-dir): it
    exists, its size and its sha256 match.

    Exit 0 when every output is intact, 1 otherwise, 2 without a lock file.

    \b
    Example:
      wanrecipe verify recipes/old-photo.yaml --run-dir runs/old-photo/20260101-120000
    """
    try:
        lock = read_lock(lock_path(recipe))
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    path = _state_path(state_dir, (recipe,))
    bad = 0
    with _open(path, must_exist=False) as state:
        for sid, step in lock.steps.items():
            problems: list[str] = []
            for out in step.outputs:
                problems += _check_blob(state, out.file, out.sha256, out.size)
                if run_dir is not None:
                    problems += _check_file(run_dir / out.file, out.file, out.sha256, out.size)
            where = "store" + (" and run directory" if run_dir is not None else "")
            if problems:
                bad += 1
                click.echo(f"FAIL {sid}: " + "; ".join(problems))
            else:
                files = ", ".join(o.file for o in step.outputs)
                click.echo(f"ok   {sid}: {files} ({where})")
    total = len(lock.steps)
    if bad:
        click.echo(
            f"{bad} of {total} step{'s' if total != 1 else ''} with missing or damaged outputs"
        )
        raise SystemExit(1)
    click.echo(f"all {total} step{'s' if total != 1 else ''} intact")


def _check_blob(state: StateDir, name: str, sha256: str, size: int) -> list[str]:
    if not state.blobs.has(sha256):
        return [f"{name}: not in the image store"]
    stored = state.blobs.size(sha256)
    if stored != size:
        return [f"{name}: {stored} bytes in the store, the lock says {size}"]
    if not state.blobs.verify(sha256):
        return [f"{name}: damaged in the store (sha256 differs)"]
    return []


def _check_file(path: Path, name: str, sha256: str, size: int) -> list[str]:
    if not path.is_file():
        return [f"{name}: missing from the run directory"]
    if path.stat().st_size != size:
        return [f"{name}: {path.stat().st_size} bytes in the run directory, the lock says {size}"]
    if sha256_file(path) != sha256:
        return [f"{name}: changed in the run directory (sha256 differs)"]
    return []


# -- cache ---------------------------------------------------------------------------------


@main.group(short_help="List, prune or empty the stored results.")
def cache() -> None:
    """The state directory: the journal of every task and the stored result images.

    \b
    Example:
      wanrecipe cache ls recipes/old-photo.yaml
      wanrecipe cache gc recipes/*.yaml --keep-days 7
    """


@cache.command("ls", short_help="List stored attempts per step.")
@click.argument("recipes", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@_state_dir_option
def cache_ls(recipes: tuple[Path, ...], state_dir: Path | None) -> None:
    """List attempts per recipe and step: keys, states, stored sizes; dangling intents (a
    submit that never answered: it may have been billed) are flagged.

    \b
    Example:
      wanrecipe cache ls recipes/old-photo.yaml
      wanrecipe cache ls --state-dir ~/.cache/wanrecipe
    """
    wanted = {str(p.resolve()) for p in recipes}
    with _open(_state_path(state_dir, recipes)) as state:
        attempts = [a for a in state.journal.attempts() if not wanted or a.recipe in wanted]
        by_step: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
        for attempt in attempts:
            by_step[(attempt.recipe, attempt.step)].append(attempt)
        dangling = 0
        for (recipe, step), group in sorted(by_step.items()):
            states = Counter(a.state for a in group)
            keys = {a.key for a in group}
            size = sum(r.size for a in group if a.state == "done" for r in a.results)
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            click.echo(
                f"{_short_recipe(recipe)} {step}: {len(group)} attempt"
                f"{'s' if len(group) != 1 else ''} ({summary}), {len(keys)} key"
                f"{'s' if len(keys) != 1 else ''}, {_size(size)} stored"
            )
            for a in group:
                flag = ""
                if a.dangling:
                    dangling += 1
                    flag = "  DANGLING: the submit never answered; it may have been billed"
                task = a.task_id or "-"
                click.echo(
                    f"  #{a.id} {a.state:<9} key {a.key[:12]} seed {a.seed} task {task}{flag}"
                )
        stats = state.journal.stats()
        counts = ", ".join(f"{n} {s}" for s, n in sorted(stats.attempts_by_state.items()))
        click.echo(
            f"total: {sum(stats.attempts_by_state.values())} attempts ({counts or 'none'}), "
            f"{stats.keys_cached} cached keys, {stats.blobs} images, {_size(stats.blob_bytes)}"
        )
        if dangling:
            click.echo(
                f"{dangling} dangling intent{'s' if dangling != 1 else ''}: the next run of the "
                "recipe looks for those tasks in the task list before submitting again"
            )


def _short_recipe(recipe: str) -> str:
    path = Path(recipe)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@cache.command("gc", short_help="Forget results no recipe uses any more.")
@click.argument("recipes", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Also keep everything younger than this many days.",
)
@_state_dir_option
def cache_gc(recipes: tuple[Path, ...], keep_days: float | None, state_dir: Path | None) -> None:
    """Remove finished attempts and images that RECIPES (as they are now, and their lock
    files) no longer reference. Attempts still in flight are always kept: they are the record
    of what may have been billed.

    \b
    Example:
      wanrecipe cache gc recipes/*.yaml --keep-days 7
    """
    if not recipes and keep_days is None:
        raise click.UsageError("name the recipes whose results to keep, or --keep-days N")
    with _open(_state_path(state_dir, recipes)) as state:
        keep: set[str] = set()
        for path in recipes:
            keep |= _referenced_keys(_load(path), state)
        if keep_days is not None:
            cutoff = time.time() - keep_days * 86400
            keep |= {
                a.key for a in state.journal.attempts() if (a.finished_at or a.created_at) >= cutoff
            }
        min_age = 3600.0 if keep_days is None else min(3600.0, keep_days * 86400)
        report = state.journal.gc(keep, min_blob_age_s=min_age)
    click.echo(
        f"removed {report.attempts_removed} attempts and {report.blobs_removed} images, "
        f"freed {_size(report.bytes_freed)}; kept {len(keep)} keys"
    )


def _referenced_keys(recipe: Any, state: StateDir) -> set[str]:
    """Keys the recipe reaches now (on either backend) and the keys in its lock file."""
    keys: set[str] = set()
    for realm in ("emulator", "dashscope"):
        marks = cache_preview(recipe, state.journal, realm)
        keys |= {m.key for m in marks.values() if m.key is not None}
    lock: Lock | None = None
    try:
        lock = read_lock(lock_path(recipe.path))
    except UsageError:
        lock = None
    if lock is not None:
        keys |= {s.key for s in lock.steps.values()}
    return keys


@cache.command("clear", short_help="Empty the cache.")
@click.argument("recipe", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_state_dir_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--include-unfinished",
    is_flag=True,
    help="Also forget attempts still in flight (they may have been billed; a later run "
    "could no longer re-attach to them).",
)
def cache_clear(
    recipe: Path | None, state_dir: Path | None, yes: bool, include_unfinished: bool
) -> None:
    """Forget every stored result of the state directory (RECIPE's by default), only when no
    run is using it.

    \b
    Example:
      wanrecipe cache clear recipes/old-photo.yaml --yes
    """
    path = _state_path(state_dir, (recipe,) if recipe is not None else ())
    with _open(path) as state:
        stats = state.journal.stats()
        if not yes:
            click.confirm(
                f"Forget {stats.keys_cached} cached results ({stats.blobs} images, "
                f"{_size(stats.blob_bytes)}) in {shown_path(path)}?",
                abort=True,
            )
        report = state.journal.clear(include_unfinished=include_unfinished)
    click.echo(
        f"removed {report.attempts_removed} attempts and {report.blobs_removed} images, "
        f"freed {_size(report.bytes_freed)}"
    )
