"""State: content keys, the content-addressed image store and the attempts journal.

``StateDir.open(path)`` gives both stores; ``content_key(...)`` names a task's result. The
journal's operations are ``JournalOps`` (``ops.py``), one policy (``policy.py``) over two
databases: SQLite (``journal.py``, the default) and Postgres (``pg_journal.py``, imported only
for a ``postgresql://`` state). The guarantees are described there and in ``docs/state.md``.
"""

from __future__ import annotations

from .blobs import Blob, BlobNotFound, BlobStore, sha256_bytes, sha256_file
from .blobs_api import Blobs
from .journal import Journal
from .keys import KEY_VERSION, canonical_json, content_key
from .ops import JournalOps
from .records import (
    Attempt,
    AttemptState,
    CacheState,
    CacheVerdict,
    DoneEntry,
    GcReport,
    InvalidTransition,
    JournalStats,
    KeyBusy,
    ResultRecord,
    WouldWait,
)
from .state_url import StateSpec, open_state, parse_state
from .statedir import StateDir

__all__ = [
    "KEY_VERSION",
    "Attempt",
    "AttemptState",
    "Blob",
    "BlobNotFound",
    "BlobStore",
    "Blobs",
    "CacheState",
    "CacheVerdict",
    "DoneEntry",
    "GcReport",
    "InvalidTransition",
    "Journal",
    "JournalOps",
    "JournalStats",
    "KeyBusy",
    "ResultRecord",
    "StateDir",
    "StateSpec",
    "WouldWait",
    "canonical_json",
    "content_key",
    "open_state",
    "parse_state",
    "sha256_bytes",
    "sha256_file",
]
