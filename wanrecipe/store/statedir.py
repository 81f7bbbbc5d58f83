"""The state directory: ``state.db`` (the journal) and ``objects/`` (the blob store) together."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import StoreError
from .blobs import fsync_dir
from .blobs_api import Blobs
from .blobs_url import open_blobs
from .journal import Journal

DB_NAME: Final = "state.db"
#: Ignore everything inside: cached images and the database never belong in version control.
GITIGNORE: Final = "*\n"


@dataclass
class StateDir:
    """An open state directory. Close it (or use ``with``) to release the database."""

    path: Path
    blobs: Blobs
    journal: Journal

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout_s: float = 30.0,
        blobs: str | os.PathLike[str] | None = None,
    ) -> StateDir:
        """Open ``path``, creating it (with ``state.db``, ``objects/`` and a ``.gitignore``).

        ``blobs``: where the images live (``store.blobs_url.open_blobs``: a directory or
        ``s3://bucket/prefix``; default ``WANRECIPE_BLOBS``, else ``objects/`` here)."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            _write_gitignore(path)
        except (NotADirectoryError, FileExistsError) as exc:
            raise StoreError(f"{path}: not a directory, cannot hold wanrecipe state") from exc
        except PermissionError as exc:
            raise StoreError(f"{path}: cannot create the state directory: {exc.strerror}") from exc
        store = open_blobs(blobs, path)
        journal = Journal(path / DB_NAME, store, busy_timeout_s=busy_timeout_s)
        # Leftovers of crashed writers; an hour is far longer than any single blob write.
        store.clean_tmp(older_than_s=3600.0)
        return cls(path, store, journal)

    def close(self) -> None:
        self.journal.close()

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
