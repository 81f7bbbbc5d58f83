"""The state: a journal (SQLite ``state.db`` here, or Postgres) and ``objects/`` (the blob
store) together, with a local directory for what stays on this machine."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import StoreError
from .blobs import fsync_dir
from .blobs_api import Blobs
from .blobs_url import open_blobs
from .journal import Journal
from .ops import JournalOps

if TYPE_CHECKING:
    from .state_url import StateSpec

DB_NAME: Final = "state.db"
#: Ignore everything inside: cached images and the database never belong in version control.
GITIGNORE: Final = "*\n"


@dataclass
class StateDir:
    """An open state. Close it (or use ``with``) to release the database.

    ``path`` is the local state directory (images, downloads in progress, learned durations);
    ``journal`` lives in it (SQLite) or in Postgres (``--state postgresql://...``); ``url`` is
    what to show for the state: the path, or the Postgres URL without its password. ``blobs``
    is ``objects/`` here, or what ``--blobs`` named (a directory, an S3 bucket cached here).
    """

    path: Path
    blobs: Blobs
    journal: JournalOps
    url: str = ""
    #: What ``--state`` named, for whoever opens a connection of its own to the same
    #: database (the quota ledger): ``spec.url`` may hold a password, never show it.
    spec: StateSpec | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url or str(self.path)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout_s: float = 30.0,
        heartbeat_ttl_s: float | None = None,
        blobs: str | os.PathLike[str] | None = None,
    ) -> StateDir:
        """Open ``path``, creating it (with ``state.db``, ``objects/`` and a ``.gitignore``).

        ``blobs``: where the images live (``store.blobs_url.open_blobs``: a directory or
        ``s3://bucket/prefix``; default ``WANRECIPE_BLOBS``, else ``objects/`` here)."""
        path = Path(path)
        store = _local_dir(path, blobs)
        journal = Journal(
            path / DB_NAME, store, busy_timeout_s=busy_timeout_s, heartbeat_ttl_s=heartbeat_ttl_s
        )
        # Leftovers of crashed writers; an hour is far longer than any single blob write.
        store.clean_tmp(older_than_s=3600.0)
        return cls(path, store, journal)

    @classmethod
    def open_spec(
        cls,
        spec: StateSpec,
        *,
        create: bool = True,
        heartbeat_ttl_s: float | None = None,
        blobs: str | os.PathLike[str] | None = None,
    ) -> StateDir:
        """Open what ``--state`` (and ``--blobs``) named (``state_url.open_state`` is the way
        in)."""
        if spec.kind == "dir":
            if not create and not (spec.path / DB_NAME).exists():
                raise StoreError(f"no state directory at {spec.path} (nothing has run there yet)")
            state = cls.open(spec.path, heartbeat_ttl_s=heartbeat_ttl_s, blobs=blobs)
            state.spec = spec
            return state
        from .pg_journal import PostgresJournal

        assert spec.url is not None
        store = _local_dir(spec.path, blobs)
        journal = PostgresJournal(spec.url, store, heartbeat_ttl_s=heartbeat_ttl_s, create=create)
        store.clean_tmp(older_than_s=3600.0)
        return cls(spec.path, store, journal, spec.shown, spec)

    def close(self) -> None:
        self.journal.close()

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _local_dir(path: Path, blobs: str | os.PathLike[str] | None) -> Blobs:
    """Make the local state directory; open the blob store (``objects/`` in it by default)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        _write_gitignore(path)
    except (NotADirectoryError, FileExistsError) as exc:
        raise StoreError(f"{path}: not a directory, cannot hold wanrecipe state") from exc
    except PermissionError as exc:
        raise StoreError(f"{path}: cannot create the state directory: {exc.strerror}") from exc
    return open_blobs(blobs, path)


def _write_gitignore(path: Path) -> None:
    target = path / ".gitignore"
    if target.exists():
        return
    # A name of its own per writer: several runs in one process (threads) may open one state
    # directory at the same moment, and a pid-named temp file would be renamed from under one.
    fd, tmp = tempfile.mkstemp(prefix=".gitignore.", suffix=".tmp", dir=path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(GITIGNORE)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    fsync_dir(path)
