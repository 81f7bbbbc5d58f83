"""The blob store's operations, named once: what the journal, the executor and the CLI may ask of
a content-addressed image store, whichever one holds the bytes.

Two implementations: :class:`~wanrecipe.store.blobs.BlobStore` (a directory, by default
``<state dir>/objects``) and :class:`~wanrecipe.store.blobs_s3.ObjectBlobs` (an S3-compatible
bucket with a local read-through cache). ``tests/team/test_blobs_contract.py`` runs one suite
against both. :func:`~wanrecipe.store.blobs_url.open_blobs` picks one from ``--blobs``.

Every blob is named by the sha256 of its bytes, so writes are idempotent and a blob never
changes once stored: no operation needs a lock, and none uses the store as one (claims live in
the journal).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from .blobs import Blob


@runtime_checkable
class Blobs(Protocol):
    """A content-addressed store of image blobs. Safe for many processes (and threads) at once.

    "In the store" means where the bytes are kept for everybody (the directory, the bucket);
    :meth:`path`, :meth:`get` and :meth:`export` serve a local file, which for a remote store is
    its read-through cache."""

    #: Whether a lookup (``has``, ``has_complete``, ``size``) may go over the network.
    remote: bool

    @property
    def location(self) -> str:
        """Where the blobs live, fit for messages and records (a path, or a URL with no
        credentials in it)."""
        ...

    @property
    def staging_dir(self) -> Path:
        """A local directory a writer streams a new blob into before :meth:`adopt` (on the same
        filesystem as the local copy, so adopting costs a rename)."""
        ...

    # -- lookup -------------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the blob's bytes are (or would be) readable locally; nothing is fetched."""
        ...

    def has(self, sha256: str) -> bool:
        """Whether the store holds the blob."""
        ...

    def has_complete(self, sha256: str, size: int) -> bool:
        """Cheap check: the store holds the blob with ``size`` bytes (no re-hash)."""
        ...

    def get(self, sha256: str) -> Blob:
        """The blob, readable at ``Blob.path``; a remote store fetches it into its cache first
        (and re-fetches a cache entry whose bytes no longer match). Raises BlobNotFound."""
        ...

    def verify(self, sha256: str) -> bool:
        """Re-read the stored bytes: True only if the blob exists and still matches its name."""
        ...

    def __iter__(self) -> Iterator[str]:
        """Every sha256 in the store (for gc and stats)."""
        ...

    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes, or None when the store does not hold it."""
        ...

    def mtime(self, sha256: str) -> float | None:
        """When the blob was last stored or re-stored (epoch seconds; gc's grace period), or
        None when the store does not hold it."""
        ...

    # -- writing ------------------------------------------------------------------------------
    # Each returns only once the blob is durably in the store (fsynced, or uploaded and its
    # size checked): a caller may mark an attempt done right after.

    def put_bytes(self, data: bytes) -> Blob:
        """Store ``data``; idempotent."""
        ...

    def put_file(self, src: Path, *, move: bool = False) -> Blob:
        """Store a file's bytes, hashing them; idempotent. ``move=True`` takes ``src`` over."""
        ...

    def adopt(self, src: Path, sha256: str, size: int) -> Blob:
        """Take over ``src``, a fsynced file in :attr:`staging_dir` whose sha256 and size the
        caller computed while writing it. Raises StoreError when ``src`` is not ``size`` bytes."""
        ...

    # -- reading out --------------------------------------------------------------------------

    def export(self, sha256: str, dest: Path, *, link: bool = True) -> Path:
        """Place the blob at ``dest`` atomically (a read-only hard link when possible, else a
        copy; ``link=False`` for a writable copy). Raises BlobNotFound."""
        ...

    # -- maintenance --------------------------------------------------------------------------

    def remove(self, sha256: str) -> int:
        """Delete the blob (and any local copy); returns the bytes freed, 0 if it was absent."""
        ...

    def clean_tmp(self, older_than_s: float = 3600.0) -> int:
        """Delete staging files of crashed writers older than ``older_than_s``; how many."""
        ...
