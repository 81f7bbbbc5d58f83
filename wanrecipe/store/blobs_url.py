"""Where the blobs live: ``--blobs URL`` / ``WANRECIPE_BLOBS`` -> a :class:`Blobs`.

- not given: ``<state dir>/objects`` (today's layout, unchanged);
- a directory (or ``file:///dir``): a local store there, e.g. on a shared disk;
- ``s3://bucket/prefix``: an S3-compatible bucket, cached in ``<state dir>/blobcache``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from ..errors import StoreError, UsageError
from ..redact import redact_text
from .blobs import BlobStore
from .blobs_api import Blobs

ENV_VAR: Final = "WANRECIPE_BLOBS"
OBJECTS_NAME: Final = "objects"
#: The read-through cache of a remote store, inside the (local) state directory.
CACHE_NAME: Final = "blobcache"
SCHEMES: Final = ("s3", "s3a")


def blobs_setting(
    given: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """The blobs location in force and where it came from (``--blobs`` or the env var)."""
    if given is not None and os.fspath(given) != "":
        return os.fspath(given), "--blobs"
    env = os.environ if env is None else env
    return (env.get(ENV_VAR) or None), ENV_VAR


def check_blobs_url(value: str, source: str = "--blobs") -> str:
    """Refuse a location that cannot work before anything runs; returns it unchanged.

    Raises UsageError naming ``source`` and the forms that are accepted."""
    if "://" not in value:
        return value
    scheme = value.partition("://")[0].lower()
    if scheme == "file":
        return value
    if scheme not in SCHEMES:
        raise UsageError(
            f"{source} {redact_text(value)}: {scheme}:// is not supported; give a directory "
            "or s3://bucket/prefix (any S3-compatible service: AWS, MinIO, Alibaba OSS)"
        )
    from .blobs_s3 import split_s3_url

    try:
        split_s3_url(value)
    except StoreError as exc:
        raise UsageError(f"{source}: {exc}") from None
    return value


def open_blobs(
    given: str | os.PathLike[str] | None,
    state_path: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> Blobs:
    """Open the blob store ``given`` (else ``WANRECIPE_BLOBS``, else the state dir's own).

    No request is made here: a bucket is first asked when a blob is."""
    value, source = blobs_setting(given, env)
    if value is None:
        return _local(Path(state_path) / OBJECTS_NAME, "the state directory")
    check_blobs_url(value, source)
    if "://" not in value:
        return _local(Path(value).expanduser(), source)
    if value.partition("://")[0].lower() == "file":
        return _local(Path(unquote(urlsplit(value).path)), source)
    from .blobs_s3 import ObjectBlobs

    return ObjectBlobs(value, Path(state_path) / CACHE_NAME)


def _local(root: Path, source: str) -> BlobStore:
    try:
        return BlobStore(root)
    except (NotADirectoryError, FileExistsError):
        raise StoreError(f"{source}: {root} is not a directory, cannot hold images") from None
    except PermissionError as exc:
        raise StoreError(f"{source}: cannot create {root}: {exc.strerror}") from None
