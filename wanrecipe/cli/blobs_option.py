"""``--blobs URL``: where the images live, for every command that opens the state."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

#: ``store.blobs_url.ENV_VAR`` (tests/test_startup.py checks it), spelled here so that a run
#: that sets no blobs loads no store machinery while its options are parsed.
ENV_VAR = "WANRECIPE_BLOBS"

HELP = (
    "Where the images live: a directory, or s3://bucket/prefix on any S3-compatible store "
    "(credentials and endpoint from the AWS_* environment; cached locally in the state "
    f"directory). Default: the state directory's objects/; env {ENV_VAR}."
)


def resolve_blobs(value: str | None) -> str | None:
    """The flag, else WANRECIPE_BLOBS, checked before anything runs (exit 2 when refused)."""
    if value is None and not os.environ.get(ENV_VAR):
        return None
    from ..store.blobs_url import blobs_setting, check_blobs_url

    given, source = blobs_setting(value)
    if given is None:
        return None
    try:
        return check_blobs_url(given, source)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc


def _callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    resolved = resolve_blobs(value)
    ctx.meta["blobs"] = resolved
    return resolved


def blobs_option(f: F, *, expose: bool = True) -> F:
    """``--blobs URL``, passed as ``blobs`` (or, with ``expose=False``, only kept in
    ``click.get_current_context().meta["blobs"]``)."""
    return click.option(
        "--blobs",
        "blobs",
        metavar="URL",
        default=None,
        expose_value=expose,
        callback=_callback,
        help=HELP,
    )(f)
