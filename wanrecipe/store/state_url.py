"""Where the state lives, from one string: ``--state URL`` / ``WANRECIPE_STATE``.

- a directory path (the default, ``.wanrecipe/`` beside the recipe): SQLite ``state.db`` and
  the image store ``objects/`` in it, as ever;
- ``postgresql://user@host:5432/db`` (or ``postgres://``; any libpq URL, its query string
  included, e.g. ``?sslmode=require``): the journal and the heartbeats in Postgres, shared by
  every machine given the same URL. The images stay in the local state directory (``--blobs``
  may put them in a bucket), as do the learned task durations and downloads in progress.

A password in the URL is never printed or recorded: messages show :func:`shown` (the URL
without it). Prefer leaving it out of the URL altogether: libpq reads ``PGPASSWORD`` and
``~/.pgpass``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from ..errors import UsageError

if TYPE_CHECKING:
    from .statedir import StateDir

#: The environment variable that names the state when no ``--state`` is given.
STATE_ENV: Final = "WANRECIPE_STATE"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES: Final = ("postgresql", "postgres")


@dataclass(frozen=True)
class StateSpec:
    """A parsed ``--state``: a directory, or a Postgres URL (with a local directory for the
    images and the rest)."""

    kind: Literal["dir", "postgres"]
    path: Path
    url: str | None = field(default=None, repr=False)  # may hold a password

    @property
    def shown(self) -> str:
        """Fit for messages and records: the path, or the URL without its password."""
        if self.url is None:
            return str(self.path)
        from .pg_journal import redact_dsn

        return redact_dsn(self.url)


def parse_state(
    spec: str | os.PathLike[str] | None,
    *,
    default_dir: Path,
    env: Mapping[str, str] | None = None,
) -> StateSpec:
    """What ``spec`` (else ``WANRECIPE_STATE``, else ``default_dir``) names. Raises
    UsageError for a URL of another kind."""
    env = os.environ if env is None else env
    if spec is None:
        spec = env.get(STATE_ENV) or None
    if spec is None:
        return StateSpec("dir", Path(default_dir))
    if isinstance(spec, os.PathLike):
        return StateSpec("dir", Path(spec))
    text = spec.strip()
    scheme = _SCHEME.match(text)
    if scheme is None:
        return StateSpec("dir", Path(text))
    if scheme.group(1).lower() in _POSTGRES:
        return StateSpec("postgres", Path(default_dir), text)
    from ..redact import redact_url

    raise UsageError(
        f"state {redact_url(text)!r}: a state is a directory or a postgresql:// URL "
        "(e.g. --state postgresql://wan@db.example.com/wanrecipe)"
    )


def open_state(
    spec: str | os.PathLike[str] | StateSpec | None,
    *,
    default_dir: Path,
    create: bool = True,
    heartbeat_ttl_s: float | None = None,
    blobs: str | os.PathLike[str] | None = None,
) -> StateDir:
    """Open the journal, liveness and image store ``spec`` names (see :func:`parse_state`);
    the images where ``blobs`` says (``--blobs``: see ``blobs_url.open_blobs``).

    ``create=False`` opens only a state something has run in (``plan``, ``cache``): a
    directory without ``state.db`` or a database without the schema raises StoreError.
    """
    from .statedir import StateDir

    parsed = spec if isinstance(spec, StateSpec) else parse_state(spec, default_dir=default_dir)
    return StateDir.open_spec(parsed, create=create, heartbeat_ttl_s=heartbeat_ttl_s, blobs=blobs)
