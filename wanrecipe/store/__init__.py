"""State: content keys, the content-addressed image store and the attempts journal.

``StateDir.open(path)`` gives both stores; ``content_key(...)`` names a task's result. The
durability guarantees are described in ``journal.py`` and ``docs/state.md``.
"""

from __future__ import annotations

from .blobs import Blob, BlobNotFound, BlobStore, sha256_bytes, sha256_file
from .blobs_api import Blobs
from .journal import (
    Attempt,
    AttemptState,
    CacheState,
    CacheVerdict,
    DoneEntry,
    GcReport,
    InvalidTransition,
    Journal,
    JournalStats,
    KeyBusy,
    ResultRecord,
)
from .keys import KEY_VERSION, canonical_json, content_key
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
    "JournalStats",
    "KeyBusy",
    "ResultRecord",
    "StateDir",
    "canonical_json",
    "content_key",
    "sha256_bytes",
    "sha256_file",
]
