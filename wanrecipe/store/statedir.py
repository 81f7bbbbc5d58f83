"""The state: a journal (SQLite ``state.db`` here, or Postgres) and ``objects/`` (the blob
store) together, with a local directory for what stays on this machine."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import StoreError
from .blobs import BlobStore, fsync_dir
from .journal import Journal
from .ops import JournalOps

if TYPE_CHECKING:
    from .state_url import StateSpec

DB_NAME: Final = "state.db"
OBJECTS_NAME: Final = "objects"
#: Ignore everything inside: cached images and the database never belong in version control.
GITIGNORE: Final = "*\n"


@dataclass
class StateDir:
    """An open state. Close it (or use ``with``) to release the database.

    ``path`` is the local state directory (images, downloads in progress, learned durations);
    ``journal`` lives in it (SQLite) or in Postgres (``--state postgresql://...``); ``url`` is
    what to show for the state: the path, or the Postgres URL without its password.
    """

    path: Path
    blobs: BlobStore
    journal: JournalOps
    url: str = ""
    #: What ``--state`` named, for whoever opens a connection of its own to the same
    #: database (the quota ledger): ``spec.url`` may hold a password, never show it.
    spec: StateSpec | None = None

    def __post_init__(self) -> None:
        self.url = self.url or str(self.path)

    @classmethod
    def open(
        cls, path: Path, *, busy_timeout_s: float = 30.0, heartbeat_ttl_s: float | None = None
    ) -> StateDir:
        """Open ``path``, creating it (with ``state.db``, ``objects/`` and a ``.gitignore``)."""
        path = Path(path)
        blobs = _local_dir(path)
        journal = Journal(
            path / DB_NAME, blobs, busy_timeout_s=busy_timeout_s, heartbeat_ttl_s=heartbeat_ttl_s
        )
        # Leftovers of crashed writers; an hour is far longer than any single blob write.
        blobs.clean_tmp(older_than_s=3600.0)
        return cls(path, blobs, journal)

    @classmethod
    def open_spec(
        cls, spec: StateSpec, *, create: bool = True, heartbeat_ttl_s: float | None = None
    ) -> StateDir:
        """Open what ``--state`` named (``state_url.open_state`` is the way in)."""
        if spec.kind == "dir":
            if not create and not (spec.path / DB_NAME).exists():
                raise StoreError(f"no state directory at {spec.path} (nothing has run there yet)")
            state = cls.open(spec.path, heartbeat_ttl_s=heartbeat_ttl_s)
            state.spec = spec
            return state
        from .pg_journal import PostgresJournal

        assert spec.url is not None
        blobs = _local_dir(spec.path)
        journal = PostgresJournal(spec.url, blobs, heartbeat_ttl_s=heartbeat_ttl_s, create=create)
        blobs.clean_tmp(older_than_s=3600.0)
        return cls(spec.path, blobs, journal, spec.shown, spec)

    def close(self) -> None:
        self.journal.close()

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _local_dir(path: Path) -> BlobStore:
    try:
        path.mkdir(parents=True, exist_ok=True)
        _write_gitignore(path)
        return BlobStore(path / OBJECTS_NAME)
    except (NotADirectoryError, FileExistsError) as exc:
        raise StoreError(f"{path}: not a directory, cannot hold wanrecipe state") from exc
    except PermissionError as exc:
        raise StoreError(f"{path}: cannot create the state directory: {exc.strerror}") from exc


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
