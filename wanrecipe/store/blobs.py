"""Content-addressed image store: ``objects/ab/cdef...`` named by the sha256 of the bytes.

Crash safety: bytes are written to a temporary file in ``objects/tmp/`` (same filesystem),
fsynced, renamed into place with ``os.replace`` and the directory is fsynced. A blob is therefore
visible under its final name only when it is complete, and ``kill -9`` or a power cut leaves at
worst a stray temporary file, which ``clean_tmp`` removes once it is old enough not to belong to a
writer that is still running.

Blobs are made read-only (like git objects) because ``export`` hard-links them into run
directories: an editor writing an exported image in place must not be able to corrupt the cache.
Use ``export(..., link=False)`` for a writable copy.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from ..errors import StoreError

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_CHUNK: Final = 1 << 20
_READ_ONLY: Final = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
TMP_DIR: Final = "tmp"


class BlobNotFound(StoreError, LookupError):
    """The store has no blob with that sha256."""


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int
    path: Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hash a file in chunks (call it off the event loop for big files)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root`` (usually ``<state dir>/objects``). Safe for many processes at once.

    The local implementation of :class:`~wanrecipe.store.blobs_api.Blobs`; also the read-through
    cache of :class:`~wanrecipe.store.blobs_s3.ObjectBlobs`."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / TMP_DIR
        self._tmp.mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> str:
        return str(self.root)

    # -- lookup -------------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the blob lives (whether or not it exists)."""
        _check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def get(self, sha256: str) -> Blob:
        path = self.path(sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {sha256} in {self.root}") from None
        return Blob(sha256, size, path)

    def has_complete(self, sha256: str, size: int) -> bool:
        """Cheap check (one stat): the blob exists with the expected size."""
        try:
            return self.path(sha256).stat().st_size == size
        except FileNotFoundError:
            return False

    def verify(self, sha256: str) -> bool:
        """Re-hash the blob: True only if it exists and its bytes still match its name."""
        try:
            return sha256_file(self.path(sha256)) == sha256
        except FileNotFoundError:
            return False

    def __iter__(self) -> Iterator[str]:
        """Every sha256 in the store (temporary files excluded)."""
        for shard in sorted(self.root.iterdir()):
            if not _SHARD.fullmatch(shard.name) or not shard.is_dir():
                continue
            for entry in sorted(shard.iterdir()):
                digest = shard.name + entry.name
                if _HEX64.fullmatch(digest):
                    yield digest

    # -- writing ------------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Blob:
        digest = sha256_bytes(data)
        existing = self._existing(digest, len(data))
        if existing is not None:
            return existing
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return self._commit(tmp, digest, len(data))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_file(self, src: Path, *, move: bool = False) -> Blob:
        """Store a file's bytes; idempotent.

        ``move=True`` takes ownership of ``src`` (a temporary file the caller wrote, e.g. a
        download): it is renamed into the store's staging area first, so nobody can change it
        while it is hashed, then renamed to its final name; no bytes are copied when ``src`` is
        on the same filesystem. Otherwise the bytes are copied and hashed in one pass.
        """
        src = Path(src)
        if move:
            tmp = self._stage_by_rename(src)
            try:
                digest, size = _hash_and_sync(tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        else:
            tmp, digest, size = self._stage_by_copy(src)
        try:
            existing = self._existing(digest, size)
            if existing is not None:
                tmp.unlink()
                return existing
            return self._commit(tmp, digest, size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @property
    def staging_dir(self) -> Path:
        """Where a writer streams a new blob before :meth:`adopt` (same filesystem as the
        store, so adopting is one rename)."""
        return self._tmp

    def adopt(self, src: Path, sha256: str, size: int) -> Blob:
        """Take ownership of ``src``, a file whose sha256 and size the caller computed while
        streaming it in, and which it has already fsynced (a download into
        :attr:`staging_dir`): renamed into place, never read or hashed again.

        Only for files this process wrote and nobody else can change (the digest is trusted);
        anything else goes through :meth:`put_file`. Raises StoreError when ``src`` is not
        ``size`` bytes (a truncated or foreign file)."""
        src = adoptable(src, sha256, size)
        existing = self._existing(sha256, size)
        if existing is not None:
            src.unlink()
            return existing
        try:
            return self._commit(src, sha256, size)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return self.put_file(src, move=True)  # another filesystem: copy and hash

    def stage(self, src: Path, *, move: bool = False) -> tuple[Path, str, int]:
        """Put ``src``'s bytes in a fsynced file of :attr:`staging_dir` and hash them; returns
        (that file, sha256, size). ``move=True`` takes ``src`` over (a rename when possible).
        For a store layered on this one (a remote store's cache) that must upload the bytes
        it was given, whatever copy this store may already hold."""
        src = Path(src)
        if not move:
            return self._stage_by_copy(src)
        tmp = self._stage_by_rename(src)
        try:
            digest, size = _hash_and_sync(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, digest, size

    def _stage_by_copy(self, src: Path) -> tuple[Path, str, int]:
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        tmp = Path(name)
        h = hashlib.sha256()

        @contextlib.contextmanager
        def chunks() -> Iterator[Iterable[bytes]]:
            with src.open("rb") as inp:
                yield iter(lambda: inp.read(_CHUNK), b"")

        size = write_hashed(fd, tmp, h, chunks)
        return tmp, h.hexdigest(), size

    def _stage_by_rename(self, src: Path) -> Path:
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        os.close(fd)
        tmp = Path(name)
        try:
            try:
                os.replace(src, tmp)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # Another filesystem: copy, and only then drop the source.
                with tmp.open("wb") as out, src.open("rb") as inp:
                    _copy(inp, out)
                src.unlink()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _existing(self, digest: str, size: int) -> Blob | None:
        path = self.path(digest)
        if not self.has_complete(digest, size):
            return None
        # Fresh mtime tells a concurrent gc that this blob is about to be referenced.
        with contextlib.suppress(OSError):
            os.utime(path)
        return Blob(digest, size, path)

    def _commit(self, tmp: Path, digest: str, size: int) -> Blob:
        final = self.path(digest)
        shard = final.parent
        if not shard.is_dir():
            shard.mkdir(exist_ok=True)
            fsync_dir(self.root)
        os.chmod(tmp, _READ_ONLY)
        os.utime(tmp)  # a moved-in file keeps its old mtime; gc's grace period needs a fresh one
        # Atomic: readers see either no blob or the whole blob. A concurrent writer of the same
        # bytes may win the race; replacing identical content is harmless.
        os.replace(tmp, final)
        fsync_dir(shard)
        return Blob(digest, size, final)

    # -- reading out --------------------------------------------------------------------------

    def export(self, sha256: str, dest: Path, *, link: bool = True) -> Path:
        """Place the blob at ``dest`` atomically: a hard link when possible, else a copy.

        An existing ``dest`` is replaced. Hard links share the store's read-only inode; pass
        ``link=False`` for an independent, writable copy.
        """
        blob = self.get(sha256)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if os.path.samefile(blob.path, dest):
                return dest
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            linked = False
            if link:
                try:
                    os.link(blob.path, tmp)
                    linked = True
                except OSError:
                    pass  # another filesystem, or links unsupported: fall back to a copy
            if not linked:
                with blob.path.open("rb") as inp, tmp.open("wb") as out:
                    _copy(inp, out)
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(dest.parent)
        return dest

    # -- maintenance --------------------------------------------------------------------------

    def remove(self, sha256: str) -> int:
        """Delete a blob; returns the bytes freed (0 if it was not there)."""
        path = self.path(sha256)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def mtime(self, sha256: str) -> float | None:
        try:
            return self.path(sha256).stat().st_mtime
        except FileNotFoundError:
            return None

    def clean_tmp(self, older_than_s: float = 3600.0) -> int:
        """Delete staging files left by crashed writers; returns how many.

        Only files older than ``older_than_s`` go: a younger one may belong to a live writer.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in self._tmp.iterdir():
            try:
                if entry.stat().st_mtime <= cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def adoptable(src: Path, sha256: str, size: int) -> Path:
    """`src` as a Path, once it is checked fit for `adopt`: a valid digest and exactly `size`
    bytes on disk; StoreError otherwise (a truncated, vanished or foreign file)."""
    _check_digest(sha256)
    src = Path(src)
    try:
        actual = src.stat().st_size
    except FileNotFoundError:
        raise StoreError(f"{src}: nothing to store (the file is gone)") from None
    if actual != size:
        raise StoreError(f"{src}: {actual} bytes on disk, {size} were written")
    return src


def write_hashed(
    fd: int, tmp: Path, h: Any, chunks: Callable[[], AbstractContextManager[Iterable[bytes]]]
) -> int:
    """Write the chunks `chunks()` yields to the open staging file `fd` (named `tmp`), feeding
    `h`, and fsync it; returns the size. The file is owned from the first line: on any error,
    opening the source included, it is closed and removed and the error raised."""
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, chunks() as source:
            for chunk in source:
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def _check_digest(sha256: str) -> None:
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise ValueError(f"not a lowercase sha256 hex digest: {sha256!r}")


def _copy(inp: BinaryIO, out: BinaryIO) -> None:
    shutil.copyfileobj(inp, out, _CHUNK)


def _hash_and_sync(path: Path) -> tuple[str, int]:
    """Hash the staged file and fsync it, so the bytes we named are the bytes on disk."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
        os.fsync(f.fileno())
    return h.hexdigest(), size
