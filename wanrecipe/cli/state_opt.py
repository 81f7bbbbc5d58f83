"""``--state URL``: the one option every command that reads or writes state shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

state_option: Callable[[F], F] = click.option(
    "--state",
    metavar="DIR|URL",
    default=None,
    help="The state: a directory (as --state-dir) or postgresql://user@host/db to share the "
    "journal with other machines (docs/state.md). Env WANRECIPE_STATE.",
)


def chosen_state(state: str | None, state_dir: Path | None) -> str | Path | None:
    """``--state`` or ``--state-dir`` (not both), checked before anything runs: a URL of
    another kind is a usage error (exit 2). None: ``WANRECIPE_STATE``, else the default."""
    if state is not None and state_dir is not None:
        raise click.UsageError("--state and --state-dir name the same thing: give one")
    from ..store import parse_state

    chosen = state if state is not None else state_dir
    try:
        parse_state(chosen, default_dir=Path(".wanrecipe"))
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    return chosen
