"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Alibaba OSS, R2 ...), through ``obstore``.

Why obstore: one small Rust-backed client (the ``object_store`` crate) for S3, GCS, Azure and
every S3-compatible endpoint, streaming and multipart uploads built in, its own retries with
backoff, typed, and no boto dependency tree; it is imported only when an ``s3://`` URL is given.

Layout: ``<prefix>/objects/sha256/ab/cdef...`` under ``s3://bucket/prefix``, named by the
sha256 of the bytes. Objects are written with plain overwriting PUTs: a blob's bytes are its
name, so two writers of one blob write the same thing and neither needs to win. Conditional
writes are never used as locks (providers differ); claims live in the journal.

Writes return only once the object is in the bucket: uploaded (the request carries its SHA-256
checksum, which the service checks), then its size read back with a HEAD. Reads go through a
local read-through cache (a :class:`~wanrecipe.store.blobs.BlobStore` under the state
directory): a blob is fetched on first use, hashed as it streams in, and a cache entry whose
bytes no longer match its name is dropped and fetched again. The cache can be deleted at any
time.

Credentials and the endpoint come from the standard ``AWS_*`` environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ...),
which obstore reads itself; they are never part of the URL, and errors carry only the bucket,
the object's key and the service's status.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import StoreError
from ..redact import redact_text
from .blobs import Blob, BlobNotFound, BlobStore, adoptable, sha256_file, write_hashed
from .blobs import _check_digest as _check

if TYPE_CHECKING:
    from obstore.store import S3Store

KEY_PREFIX: Final = "objects/sha256/"
#: An object found already stored is uploaded again when older than this, so that its age
#: tells ``cache gc`` (which spares unreferenced blobs younger than an hour) it is in use.
REFRESH_AFTER_S: Final = 600.0
_HEX: Final = re.compile(r"[0-9a-f]{2}/[0-9a-f]{62}")
_ACCESS_KEY_ID: Final = re.compile(r"\b(?:AKIA|ASIA|LTAI)[A-Za-z0-9]{8,}")
_FETCH_TRIES: Final = 3


class ObjectBlobs:
    """A :class:`~wanrecipe.store.blobs_api.Blobs` over an S3-compatible bucket."""

    remote = True

    def __init__(self, url: str, cache_root: Path, *, store: S3Store | None = None) -> None:
        bucket, prefix = split_s3_url(url)
        self._location = f"s3://{bucket}/{prefix}".rstrip("/")
        self._store = store if store is not None else _open_store(bucket, prefix, self._location)
        self._cache = BlobStore(cache_root)
        # What this process knows the bucket holds: sha256 -> (size, last modified). Blobs
        # never change, so an entry goes stale only by removal (gc), which is graced by age.
        self._remote: dict[str, tuple[int, float]] = {}
        # Cache entries hashed since they last changed: sha256 -> (inode, size, mtime_ns).
        self._verified: dict[str, tuple[int, int, int]] = {}
        # Objects found not to match their name: the next put uploads them, whatever their age.
        self._damaged: set[str] = set()

    @property
    def location(self) -> str:
        return self._location

    @property
    def staging_dir(self) -> Path:
        return self._cache.staging_dir

    @property
    def cache(self) -> BlobStore:
        """The local read-through cache."""
        return self._cache

    @staticmethod
    def key(sha256: str) -> str:
        """The object's key under the store's prefix."""
        _check(sha256)
        return f"{KEY_PREFIX}{sha256[:2]}/{sha256[2:]}"

    # -- lookup -------------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        return self._cache.path(sha256)

    def has(self, sha256: str) -> bool:
        return self._meta(sha256) is not None

    def has_complete(self, sha256: str, size: int) -> bool:
        known = self._remote.get(sha256)
        if known is not None and known[0] == size:
            return True
        meta = self._head(sha256)
        return meta is not None and meta[0] == size

    def size(self, sha256: str) -> int | None:
        meta = self._meta(sha256)
        return None if meta is None else meta[0]

    def mtime(self, sha256: str) -> float | None:
        meta = self._meta(sha256)
        return None if meta is None else meta[1]

    def __iter__(self) -> Iterator[str]:
        import obstore

        with self._errors("list", KEY_PREFIX):
            for chunk in obstore.list(self._store, KEY_PREFIX, chunk_size=1000):
                for meta in chunk:
                    rest = meta["path"].removeprefix(KEY_PREFIX)
                    if not _HEX.fullmatch(rest):
                        continue  # not ours: another tool's object under the prefix
                    digest = rest.replace("/", "")
                    self._remote[digest] = (meta["size"], meta["last_modified"].timestamp())
                    yield digest

    def get(self, sha256: str) -> Blob:
        return self._cached(sha256)

    def verify(self, sha256: str) -> bool:
        """Fetch the object and hash it (the bucket's copy, not the cache's)."""
        try:
            tmp, digest, size = self._download(sha256)
        except BlobNotFound:
            return False
        if digest != sha256:
            tmp.unlink(missing_ok=True)
            self._damaged.add(sha256)
            return False
        self._install(tmp, sha256, size)
        return True

    # -- writing ------------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Blob:
        fd, name = tempfile.mkstemp(dir=self.staging_dir, suffix=".part")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._store_staged(tmp, hashlib.sha256(data).hexdigest(), len(data))

    def put_file(self, src: Path, *, move: bool = False) -> Blob:
        tmp, digest, size = self._cache.stage(src, move=move)
        return self._store_staged(tmp, digest, size)

    def adopt(self, src: Path, sha256: str, size: int) -> Blob:
        return self._store_staged(adoptable(src, sha256, size), sha256, size)

    def _store_staged(self, tmp: Path, sha256: str, size: int) -> Blob:
        """Upload the staged file (unless the bucket has a fresh copy), then keep it as the
        cache entry. The upload reads ``tmp`` itself, never a cache entry that might differ."""
        try:
            self._upload(tmp, sha256, size)
            blob = self._cache.adopt(tmp, sha256, size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return blob

    def _upload(self, path: Path, sha256: str, size: int) -> None:
        import obstore

        known = self._remote.get(sha256) or self._head(sha256)
        fresh = known is not None and time.time() - known[1] < REFRESH_AFTER_S
        if fresh and known is not None and known[0] == size and sha256 not in self._damaged:
            return
        key = self.key(sha256)
        with self._errors("upload", key):
            obstore.put(self._store, key, path, attributes={"sha256": sha256})
        meta = self._head(sha256)
        if meta is None or meta[0] != size:
            got = "nothing" if meta is None else f"{meta[0]} bytes"
            raise StoreError(
                f"{self._location}: uploaded {key} ({size} bytes) but the bucket holds {got}; "
                "check the bucket's endpoint and retry"
            )
        self._damaged.discard(sha256)

    # -- reading out --------------------------------------------------------------------------

    def export(self, sha256: str, dest: Path, *, link: bool = True) -> Path:
        for _ in range(_FETCH_TRIES):
            self._cached(sha256)
            try:
                return self._cache.export(sha256, dest, link=link)
            except BlobNotFound:
                continue  # another process replaced the cache entry in between: once more
        raise StoreError(f"{self._location}: cannot keep {sha256} in the local cache")

    def _cached(self, sha256: str) -> Blob:
        """The cache entry, hashed once per change; fetched when missing or damaged."""
        path = self._cache.path(sha256)
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self._verified.get(sha256) == sig:
                return Blob(sha256, st.st_size, path)
            if sha256_file(path) == sha256:
                self._verified[sha256] = sig
                return Blob(sha256, st.st_size, path)
            # Damaged (a disk error, a hand edit): the bucket still has the real bytes.
            self._verified.pop(sha256, None)
            path.unlink(missing_ok=True)
        tmp, digest, size = self._download(sha256)
        if digest != sha256:
            tmp.unlink(missing_ok=True)
            self._damaged.add(sha256)
            raise StoreError(
                f"{self._location}: the object {self.key(sha256)} does not match its name "
                f"(its bytes hash to {digest}); the bucket's copy is damaged: remove it and "
                "run again to fetch the image anew"
            )
        return self._install(tmp, sha256, size)

    def _download(self, sha256: str) -> tuple[Path, str, int]:
        """Stream the object into a fsynced staging file, hashing it; (file, sha256, size)."""
        import obstore

        key = self.key(sha256)
        fd, name = tempfile.mkstemp(dir=self.staging_dir, suffix=".part")
        tmp = Path(name)
        h = hashlib.sha256()

        @contextlib.contextmanager
        def chunks() -> Iterator[Iterable[bytes]]:
            with self._errors("download", key, sha256):
                yield (
                    bytes(c) for c in obstore.get(self._store, key).stream(min_chunk_size=1 << 20)
                )

        size = write_hashed(fd, tmp, h, chunks)
        return tmp, h.hexdigest(), size

    def _install(self, tmp: Path, sha256: str, size: int) -> Blob:
        self._cache.path(sha256).unlink(missing_ok=True)  # whatever was there did not verify
        blob = self._cache.adopt(tmp, sha256, size)
        st = blob.path.stat()
        self._verified[sha256] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return blob

    # -- maintenance --------------------------------------------------------------------------

    def remove(self, sha256: str) -> int:
        """Delete the object (and its cache entry); 0 when it is gone, or when it was written
        again since this store listed or last saw it: another worker uploading the same
        bytes (gc decided on the age it listed; the object is younger now)."""
        import obstore

        seen = self._remote.get(sha256)
        meta = self._head(sha256)
        if meta is not None and seen is not None and meta[1] > seen[1]:
            return 0  # re-uploaded meanwhile: its writer may be about to record it done
        self._remote.pop(sha256, None)
        self._verified.pop(sha256, None)
        self._cache.remove(sha256)
        if meta is None:
            return 0
        key = self.key(sha256)
        with self._errors("delete", key):
            obstore.delete(self._store, key)
        return meta[0]

    def clean_tmp(self, older_than_s: float = 3600.0) -> int:
        return self._cache.clean_tmp(older_than_s)

    # -- the bucket ---------------------------------------------------------------------------

    def _meta(self, sha256: str) -> tuple[int, float] | None:
        return self._remote.get(sha256) or self._head(sha256)

    def _head(self, sha256: str) -> tuple[int, float] | None:
        import obstore

        key = self.key(sha256)
        try:
            with self._errors("look up", key, sha256):
                meta = obstore.head(self._store, key)
        except BlobNotFound:
            self._remote.pop(sha256, None)
            return None
        found = (meta["size"], meta["last_modified"].timestamp())
        self._remote[sha256] = found
        return found

    @contextlib.contextmanager
    def _errors(self, what: str, key: str, sha256: str | None = None) -> Iterator[None]:
        """obstore's errors as ours: BlobNotFound for a missing object, StoreError otherwise,
        with the first line of the service's answer and nothing that could be a secret."""
        from obstore.exceptions import BaseError, NotFoundError

        try:
            yield
        except (FileNotFoundError, NotFoundError) as exc:
            if sha256 is None:
                raise StoreError(
                    f"{self._location}: cannot {what} {key}: not found (does the bucket exist?)"
                ) from None
            raise BlobNotFound(f"no blob {sha256} in {self._location}") from exc
        except (BaseError, OSError) as exc:
            raise StoreError(
                f"{self._location}: cannot {what} {key}: {describe(exc)}; check the bucket, "
                "the AWS_* settings (endpoint, region, credentials) and the network"
            ) from None


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``). Raises StoreError for
    anything else; the message never repeats credentials written into the URL."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("s3", "s3a") or not sep:
        raise StoreError(f"{redact_text(url)}: not an s3:// URL (s3://bucket/prefix)")
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or "?" in url or "#" in url:
        raise StoreError(
            "an s3:// URL takes no credentials or options (s3://bucket/prefix): give them "
            "in the AWS_* environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_ENDPOINT_URL, AWS_REGION)"
        )
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise StoreError(
            f"s3://{bucket}: not a bucket name (3-63 lowercase letters, digits, dots and "
            "hyphens); the URL is s3://bucket/prefix"
        )
    prefix = "/".join(p for p in prefix.split("/") if p)
    if any(p in (".", "..") for p in prefix.split("/")):
        raise StoreError(f"s3://{bucket}/{prefix}: the prefix may not contain . or ..")
    return bucket, prefix


def describe(exc: BaseException) -> str:
    """The first line of an obstore error, the response body and key ids cut off."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # "... Server returned non-2xx status code: 403 Forbidden: <Error>...": keep the status.
    status = re.search(r"status code: (\d{3}[^:]*)", text)
    if status:
        text = text[: status.end()]
    text = _ACCESS_KEY_ID.sub("<key id>", text)
    return redact_text(text)[:300]


def _open_store(bucket: str, prefix: str, location: str) -> S3Store:
    try:
        from obstore.store import S3Store
    except ImportError:
        raise StoreError(
            f"{location}: blobs in a bucket need the team extra: pip install 'wanrecipe[team]'"
        ) from None
    from obstore.exceptions import BaseError

    try:
        return S3Store(bucket, prefix=prefix or None, checksum_algorithm="SHA256")
    except (BaseError, ValueError) as exc:
        raise StoreError(f"{location}: cannot configure the bucket: {describe(exc)}") from None
