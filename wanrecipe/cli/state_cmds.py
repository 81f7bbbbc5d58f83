"""verify, cache ls|gc|clear: the commands that look after stored results."""

from __future__ import annotations

import json
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
from ..store import Attempt, StateDir, StateSpec, open_state, parse_state, sha256_file
from . import EXIT_INVALID, main
from .blobs_option import blobs_option
from .common import echo_diagnostics, shown_path
from .state_opt import chosen_state, state_option

_state_dir_only = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The state directory (default: .wanrecipe/ beside the recipe, or "
    "WANRECIPE_STATE_DIR, or ./.wanrecipe without a recipe).",
)


def _state_dir_option(f: Any) -> Any:
    """--state-dir, and --blobs (kept in the click context for :func:`_open`)."""
    return blobs_option(_state_dir_only(f), expose=False)


def _state_path(
    state_dir: Path | None, recipes: tuple[Path, ...] = (), state: str | None = None
) -> StateSpec:
    """What --state / --state-dir (else WANRECIPE_STATE, else the recipe's default) names."""
    given = chosen_state(state, state_dir)
    default = default_state_dir(recipes[0] if recipes else Path.cwd() / "recipe.yaml")
    return parse_state(given, default_dir=default)


def _blobs() -> str | None:
    """What --blobs (or WANRECIPE_BLOBS) named, checked by its option."""
    return click.get_current_context().meta.get("blobs")


def _shown(spec: StateSpec) -> str:
    return shown_path(spec.path) if spec.kind == "dir" else spec.shown


def _open(spec: StateSpec, *, must_exist: bool = True) -> StateDir:
    if must_exist and spec.kind == "dir" and not (spec.path / "state.db").exists():
        raise click.UsageError(
            f"no state directory at {shown_path(spec.path)} (nothing has run there yet)"
        )
    try:
        return open_state(spec, default_dir=spec.path, create=not must_exist, blobs=_blobs())
    except WanRecipeError as exc:
        if "nothing has run there yet" in str(exc):
            raise click.UsageError(str(exc)) from exc
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


@main.command(short_help="Check that a run's outputs (or a lock file's) are intact.")
@click.argument("target", metavar="RUN_DIR|RECIPE", type=click.Path(path_type=Path))
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With RECIPE: also check the files of this run directory.",
)
@_state_dir_option
@state_option
def verify(target: Path, run_dir: Path | None, state_dir: Path | None, state: str | None) -> None:
    """Check that results are intact: each file exists, with its recorded size and sha256.

    \b
    verify RUN_DIR   every output file the run record RUN_DIR/run.json lists, against the
                     sha256 and size it records. Needs nothing but the run directory, so it
                     works for every run, from the CLI or the Python API (which writes no
                     lock file). A batch run directory checks each row's run.
    verify RECIPE    every output the lock file <recipe>.lock names (written by `wanrecipe
                     run`), in the image store, and with --run-dir in that directory too.

    Exit 0 when every output is intact, 1 when one is missing or damaged, 2 when the
    argument is neither a run directory nor a recipe with a lock file.

    \b
    Examples:
      wanrecipe verify runs/old-photo/20260101-120000
      wanrecipe verify recipes/old-photo.yaml --run-dir runs/old-photo/20260101-120000
    """
    if not target.exists() and not lock_path(target).exists():
        raise click.UsageError(
            f"{shown_path(target)} does not exist: name a run directory "
            "(runs/<name>/<timestamp>) or a recipe with a lock file"
        )
    if target.is_dir() or target.name == "run.json":
        if run_dir is not None:
            raise click.UsageError("--run-dir goes with a RECIPE; to check a run, name its dir")
        _verify_run(target.parent if target.name == "run.json" else target)
        return
    try:
        lock = read_lock(lock_path(target))
    except UsageError as exc:
        raise click.UsageError(
            f"{exc} (or name a run directory: wanrecipe verify runs/<name>/<timestamp>)"
        ) from exc
    path = _state_path(state_dir, (target,), state)
    bad = 0
    with _open(path, must_exist=False) as opened:
        for sid, step in lock.steps.items():
            problems: list[str] = []
            for out in step.outputs:
                problems += _check_blob(opened, out.file, out.sha256, out.size)
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
        click.echo(f"{bad} of {_plural(total, 'step')} with missing or damaged outputs")
        raise SystemExit(1)
    click.echo(f"all {_plural(total, 'step')} intact")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.is_file():
        raise click.UsageError(
            f"{shown_path(run_dir)} has no run.json: name a run directory "
            "(runs/<name>/<timestamp>) or a recipe with a lock file"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise click.UsageError(f"{shown_path(path)} is not a run record: {exc}") from exc
    batch = isinstance(data, dict) and data.get("kind") == "batch"
    if not isinstance(data, dict) or not isinstance(
        data.get("rows" if batch else "steps"), list if batch else dict
    ):
        raise click.UsageError(f"{shown_path(path)} is not a run record: no steps or rows")
    return data


def _verify_run(run_dir: Path) -> None:
    record = _read_record(run_dir)
    if record.get("kind") == "batch":
        _verify_batch(run_dir, record)
        return
    lines, damaged, summary = _check_run(run_dir, record)
    for line in lines:
        click.echo(line)
    click.echo(summary)
    if damaged:
        raise SystemExit(1)


def _verify_batch(batch_dir: Path, record: dict[str, Any]) -> None:
    """Each row of a batch is an ordinary run in its own directory, with its own run.json."""
    checked = bad = 0
    for row in record.get("rows") or []:
        row = row if isinstance(row, dict) else {}
        key, sub = str(row.get("key", row.get("index", "?"))), row.get("dir")
        if not sub:
            click.echo(f"row {key}: {row.get('status', 'not run')}, nothing to check")
            continue
        row_dir = batch_dir / str(sub)
        if row.get("status") == "skipped" and not (row_dir / "run.json").exists():
            # Not run here: e.g. another worker's row in team mode (its error says whose).
            click.echo(f"row {key}: skipped ({row.get('error') or 'not run'}), nothing to check")
            continue
        checked += 1
        if not _inside(batch_dir, row_dir) or not (row_dir / "run.json").is_file():
            bad += 1
            click.echo(f"row {key}: FAIL {sub}: no run.json in the batch directory")
            continue
        lines, damaged, summary = _check_run(row_dir, _read_record(row_dir))
        bad += bool(damaged)
        for line in lines:
            if not line.startswith("ok "):
                click.echo(f"row {key}: {line}")
        click.echo(f"row {key}: {summary}")
    if bad:
        click.echo(f"{bad} of {_plural(checked, 'row')} with missing or damaged outputs")
        raise SystemExit(1)
    click.echo(f"all {_plural(checked, 'row')} intact")


def _check_run(run_dir: Path, record: dict[str, Any]) -> tuple[list[str], int, str]:
    """Lines per step, how many steps are damaged, and the closing line."""
    lines: list[str] = []
    damaged = with_outputs = files = 0
    for sid, step in (record.get("steps") or {}).items():
        results = step.get("results") or [] if isinstance(step, dict) else []
        if not results:
            state = step.get("state", "unknown") if isinstance(step, dict) else "unknown"
            lines.append(f"--   {sid}: {state} in this run: no outputs to check")
            continue
        with_outputs += 1
        problems: list[str] = []
        for result in results:
            files += 1
            problems += _check_recorded(run_dir, result)
        if problems:
            damaged += 1
            lines.append(f"FAIL {sid}: " + "; ".join(problems))
        else:
            lines.append(f"ok   {sid}: " + ", ".join(str(r.get("path")) for r in results))
    if damaged:
        closing = f"{damaged} of {_plural(with_outputs, 'step')} with missing or damaged outputs"
        return lines, damaged, closing
    without = " with outputs" if with_outputs < len(lines) else ""
    closing = (
        f"all {_plural(with_outputs, 'step')}{without} intact "
        f"({_plural(files, 'file')} checked against run.json)"
    )
    status = record.get("status", "ok")
    if status != "ok":
        closing += "; " + _STATUS_NOTES.get(status, f"the run's status is {status}")
    return lines, 0, closing


_STATUS_NOTES = {
    "failed": "the run itself failed",
    "interrupted": "the run was interrupted",
    "running": "the run did not finish",
    "budget": "the run stopped at its budget",
}


def _check_recorded(run_dir: Path, result: Any) -> list[str]:
    if not isinstance(result, dict):
        return ["a result entry that is not an object"]
    name, sha256, size = str(result.get("path", "")), result.get("sha256"), result.get("size")
    path = run_dir / name
    if not name or Path(name).is_absolute() or not _inside(run_dir, path):
        return [f"{name}: outside the run directory"]
    if not path.is_file():
        return [f"{name}: missing"]
    actual = path.stat().st_size
    if actual != size:
        return [f"{name}: {actual} bytes, run.json says {size}"]
    if sha256_file(path) != sha256:
        return [f"{name}: changed (sha256 differs from run.json)"]
    return []


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


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
@state_option
def cache_ls(recipes: tuple[Path, ...], state_dir: Path | None, state: str | None) -> None:
    """List attempts per recipe and step: keys, states, stored sizes; dangling intents (a
    submit that never answered: it may have been billed) are flagged.

    \b
    Example:
      wanrecipe cache ls recipes/old-photo.yaml
      wanrecipe cache ls --state-dir ~/.cache/wanrecipe
    """
    wanted = {str(p.resolve()) for p in recipes}
    with _open(_state_path(state_dir, recipes, state)) as opened:
        attempts = [a for a in opened.journal.attempts() if not wanted or a.recipe in wanted]
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
        stats = opened.journal.stats()
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
@state_option
def cache_gc(
    recipes: tuple[Path, ...], keep_days: float | None, state_dir: Path | None, state: str | None
) -> None:
    """Remove finished attempts and images that RECIPES (as they are now, and their lock
    files) no longer reference. Attempts still in flight are always kept: they are the record
    of what may have been billed.

    \b
    Example:
      wanrecipe cache gc recipes/*.yaml --keep-days 7
    """
    if not recipes and keep_days is None:
        raise click.UsageError("name the recipes whose results to keep, or --keep-days N")
    with _open(_state_path(state_dir, recipes, state)) as opened:
        keep: set[str] = set()
        for path in recipes:
            keep |= _referenced_keys(_load(path), opened)
        if keep_days is not None:
            cutoff = time.time() - keep_days * 86400
            keep |= {
                a.key
                for a in opened.journal.attempts()
                if (a.finished_at or a.created_at) >= cutoff
            }
        min_age = 3600.0 if keep_days is None else min(3600.0, keep_days * 86400)
        report = opened.journal.gc(keep, min_blob_age_s=min_age)
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
@state_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--include-unfinished",
    is_flag=True,
    help="Also forget attempts still in flight (they may have been billed; a later run "
    "could no longer re-attach to them).",
)
def cache_clear(
    recipe: Path | None,
    state_dir: Path | None,
    state: str | None,
    yes: bool,
    include_unfinished: bool,
) -> None:
    """Forget every stored result of the state directory (RECIPE's by default), only when no
    run is using it.

    \b
    Example:
      wanrecipe cache clear recipes/old-photo.yaml --yes
    """
    path = _state_path(state_dir, (recipe,) if recipe is not None else (), state)
    with _open(path) as opened:
        stats = opened.journal.stats()
        if not yes:
            click.confirm(
                f"Forget {stats.keys_cached} cached results ({stats.blobs} images, "
                f"{_size(stats.blob_bytes)}) in {_shown(path)}?",
                abort=True,
            )
        report = opened.journal.clear(include_unfinished=include_unfinished)
    click.echo(
        f"removed {report.attempts_removed} attempts and {report.blobs_removed} images, "
        f"freed {_size(report.bytes_freed)}"
    )
