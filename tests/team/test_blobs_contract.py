"""One contract for every blob store: the local directory and an S3 bucket (moto on 127.0.0.1).

Each test runs against both; the ones at the end are about what only a remote store has (the
read-through cache, the object layout, the bucket's own damage, secrets in errors)."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wanrecipe.errors import StoreError
from wanrecipe.store import Blob, BlobNotFound, Blobs, BlobStore, Journal, ResultRecord
from wanrecipe.store.blobs_s3 import ObjectBlobs

KINDS = ["local", "s3"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def blobs(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Blobs:
    if kind == "local":
        return BlobStore(tmp_path / "objects")
    bucket = request.getfixturevalue("s3_bucket")
    return ObjectBlobs(f"{bucket}/team/wan", tmp_path / "cache")


def bucket_objects(url: str) -> dict[str, int]:
    """Every object in the bucket by key -> size, read with another client (boto3)."""
    import boto3

    name = url.removeprefix("s3://").split("/")[0]
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def put_raw(url: str, key: str, data: bytes) -> None:
    import boto3

    name = url.removeprefix("s3://").split("/")[0]
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    s3.put_object(Bucket=name, Key=key, Body=data)


# -- every operation ----------------------------------------------------------------------------


def test_is_a_blobs(blobs: Blobs) -> None:
    assert isinstance(blobs, Blobs)
    assert blobs.staging_dir.is_dir()
    assert "testing" not in blobs.location


def test_put_bytes_then_every_lookup(blobs: Blobs) -> None:
    data = b"\x89PNG a small image" * 100
    blob = blobs.put_bytes(data)
    assert blob == Blob(sha(data), len(data), blob.path)
    assert blobs.has(blob.sha256)
    assert blobs.has_complete(blob.sha256, len(data))
    assert not blobs.has_complete(blob.sha256, len(data) + 1)
    assert blobs.size(blob.sha256) == len(data)
    mtime = blobs.mtime(blob.sha256)
    assert mtime is not None and abs(mtime - time.time()) < 3600
    got = blobs.get(blob.sha256)
    assert got.size == len(data) and got.path.read_bytes() == data
    assert blobs.path(blob.sha256) == got.path
    assert blobs.verify(blob.sha256)
    assert list(blobs) == [blob.sha256]


def test_puts_are_idempotent(blobs: Blobs, tmp_path: Path) -> None:
    data = b"same bytes"
    first = blobs.put_bytes(data)
    again = blobs.put_bytes(data)
    src = tmp_path / "copy.png"
    src.write_bytes(data)
    by_file = blobs.put_file(src)
    by_move = blobs.put_file(src, move=True)
    assert first.sha256 == again.sha256 == by_file.sha256 == by_move.sha256 == sha(data)
    assert list(blobs) == [sha(data)]
    assert not src.exists()  # move=True took it over
    assert blobs.get(sha(data)).path.read_bytes() == data


def test_put_file_copies_unless_moving(blobs: Blobs, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"copied")
    blob = blobs.put_file(src)
    assert src.read_bytes() == b"copied"  # left alone
    assert blob.sha256 == sha(b"copied") and blob.size == 6
    moved = tmp_path / "moved.png"
    moved.write_bytes(b"moved")
    assert blobs.put_file(moved, move=True).sha256 == sha(b"moved")
    assert not moved.exists()
    assert sorted(blobs) == sorted([sha(b"copied"), sha(b"moved")])


def test_adopt_takes_a_staged_file_over(blobs: Blobs) -> None:
    data = os.urandom(3000)
    staged = blobs.staging_dir / "download.part"
    staged.write_bytes(data)
    blob = blobs.adopt(staged, sha(data), len(data))
    assert not staged.exists()
    assert blobs.has_complete(sha(data), len(data))
    assert blob.path.read_bytes() == data
    # The same bytes adopted again: still one blob, the second file is dropped.
    staged.write_bytes(data)
    blobs.adopt(staged, sha(data), len(data))
    assert not staged.exists() and list(blobs) == [sha(data)]


def test_adopt_refuses_a_truncated_or_vanished_file(blobs: Blobs) -> None:
    data = b"0123456789"
    staged = blobs.staging_dir / "short.part"
    staged.write_bytes(data[:4])
    with pytest.raises(StoreError, match="4 bytes on disk, 10 were written"):
        blobs.adopt(staged, sha(data), len(data))
    assert not blobs.has(sha(data))
    with pytest.raises(StoreError, match="the file is gone"):
        blobs.adopt(blobs.staging_dir / "gone.part", sha(data), len(data))


def test_export_links_or_copies(blobs: Blobs, tmp_path: Path) -> None:
    data = b"exported image"
    digest = blobs.put_bytes(data).sha256
    linked = blobs.export(digest, tmp_path / "run" / "a.png")
    assert linked.read_bytes() == data
    assert not stat.S_IMODE(linked.stat().st_mode) & stat.S_IWUSR  # read-only like the store
    copied = blobs.export(digest, tmp_path / "run" / "b.png", link=False)
    assert copied.read_bytes() == data
    copied.write_bytes(b"edited")  # a writable copy: the store is unharmed
    assert blobs.verify(digest)
    # An existing destination is replaced.
    (tmp_path / "run" / "c.png").write_bytes(b"old")
    assert blobs.export(digest, tmp_path / "run" / "c.png").read_bytes() == data


def test_missing_blob(blobs: Blobs, tmp_path: Path) -> None:
    absent = sha(b"never stored")
    assert not blobs.has(absent)
    assert not blobs.has_complete(absent, 12)
    assert blobs.size(absent) is None and blobs.mtime(absent) is None
    assert not blobs.verify(absent)
    assert blobs.remove(absent) == 0
    with pytest.raises(BlobNotFound, match=absent):
        blobs.get(absent)
    with pytest.raises(BlobNotFound, match=absent):
        blobs.export(absent, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match="sha256"):
        blobs.has("../../etc/passwd")


def test_listing_and_removal_for_gc(blobs: Blobs, tmp_path: Path) -> None:
    datas = [f"image {i}".encode() for i in range(5)]
    for d in datas:
        blobs.put_bytes(d)
    assert sorted(blobs) == sorted(sha(d) for d in datas)
    assert blobs.remove(sha(datas[0])) == len(datas[0])
    assert not blobs.has(sha(datas[0]))
    with pytest.raises(BlobNotFound):
        blobs.export(sha(datas[0]), tmp_path / "gone.png")
    assert sorted(blobs) == sorted(sha(d) for d in datas[1:])
    assert sum(blobs.size(d) or 0 for d in blobs) == sum(len(d) for d in datas[1:])


def test_clean_tmp_spares_young_staging_files(blobs: Blobs) -> None:
    old = blobs.staging_dir / "old.part"
    young = blobs.staging_dir / "young.part"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert blobs.clean_tmp(older_than_s=3600) == 1
    assert not old.exists() and young.exists()


def _journal_with(blobs: Blobs, path: Path) -> Journal:
    return Journal(path, blobs)


def _done(journal: Journal, blobs: Blobs, key: str, data: bytes) -> int:
    aid = journal.record_intent(
        key, step="s", recipe="r.yaml", backend="127.0.0.1", request={"seed": 1}, seed=1
    )
    journal.record_submitted(aid, f"task-{aid}", None)
    blob = blobs.put_bytes(data)
    journal.record_done(aid, [ResultRecord(0, blob.sha256, blob.size, 8, 8, "")], 1)
    return aid


def test_journal_gc_and_stats_over_the_store(blobs: Blobs, tmp_path: Path) -> None:
    journal = _journal_with(blobs, tmp_path / "state.db")
    try:
        keep, drop = "b" * 64, "d" * 64
        _done(journal, blobs, keep, b"kept image")
        _done(journal, blobs, drop, b"dropped image")
        blobs.put_bytes(b"orphan")
        stats = journal.stats()
        assert (stats.blobs, stats.blob_bytes) == (
            3,
            len(b"kept image") + len(b"dropped image") + 6,
        )
        assert journal.lookup_done(keep) is not None
        report = journal.gc([keep], min_blob_age_s=0.0)
        assert (report.attempts_removed, report.blobs_removed) == (1, 2)
        assert report.bytes_freed == len(b"dropped image") + len(b"orphan")
        assert list(blobs) == [sha(b"kept image")]
        assert journal.lookup_done(keep) is not None
    finally:
        journal.close()


# -- what only a remote store has ---------------------------------------------------------------


@pytest.fixture
def bucket(s3_bucket: str) -> str:
    return f"{s3_bucket}/team/wan"


def test_objects_are_content_addressed_under_the_prefix(bucket: str, tmp_path: Path) -> None:
    store = ObjectBlobs(bucket, tmp_path / "cache")
    data = b"laid out" * 999
    digest = store.put_bytes(data).sha256
    # Visible to any other client the moment put returns, complete.
    key = f"team/wan/objects/sha256/{digest[:2]}/{digest[2:]}"
    assert bucket_objects(bucket) == {key: len(data)}
    assert store.location == bucket


def test_gc_spares_an_object_written_again_after_it_was_listed(bucket: str, tmp_path: Path) -> None:
    """gc lists, judges an object old and unreferenced, and removes it; if another worker
    uploads the same bytes in between (its result, about to be recorded done), the object is
    younger than gc listed it and stays."""
    data = os.urandom(3000)
    gc_side = ObjectBlobs(bucket, tmp_path / "gc")
    digest = gc_side.put_bytes(data).sha256
    assert digest in list(gc_side)  # listed, with its age
    time.sleep(1.1)  # S3 times have whole seconds
    put_raw(bucket, f"team/wan/objects/sha256/{digest[:2]}/{digest[2:]}", data)
    assert gc_side.remove(digest) == 0
    assert gc_side.has_complete(digest, len(data))
    # Listed again (its new age), it is removed as before.
    assert digest in list(gc_side)
    assert gc_side.remove(digest) == len(data)
    assert not gc_side.has_complete(digest, len(data))


def test_another_machine_fetches_on_demand(bucket: str, tmp_path: Path) -> None:
    data = os.urandom(4096)
    ObjectBlobs(bucket, tmp_path / "laptop").put_bytes(data)
    ci = ObjectBlobs(bucket, tmp_path / "ci")
    assert ci.has_complete(sha(data), len(data))
    assert not ci.path(sha(data)).exists()  # a lookup fetches nothing
    out = ci.export(sha(data), tmp_path / "run" / "out.png")
    assert out.read_bytes() == data
    assert ci.path(sha(data)).read_bytes() == data  # now in its cache


def test_a_corrupt_cache_entry_is_detected_and_fetched_again(bucket: str, tmp_path: Path) -> None:
    data = os.urandom(2048)
    digest = ObjectBlobs(bucket, tmp_path / "cache").put_bytes(data).sha256
    cached = tmp_path / "cache" / digest[:2] / digest[2:]
    cached.chmod(0o644)
    cached.write_bytes(b"\0" * len(data))  # same size: only the hash can tell
    store = ObjectBlobs(bucket, tmp_path / "cache")
    assert store.has_complete(digest, len(data))
    assert store.export(digest, tmp_path / "out.png", link=False).read_bytes() == data
    assert cached.read_bytes() == data
    # Also within one process: damage after a verified read is noticed at the next one.
    cached = store.path(digest)
    cached.chmod(0o644)
    cached.write_bytes(b"junk")
    assert store.get(digest).path.read_bytes() == data


def test_a_damaged_bucket_object_is_refused(bucket: str, tmp_path: Path) -> None:
    data = b"the real bytes"
    digest = sha(data)
    put_raw(bucket, "team/wan/" + ObjectBlobs.key(digest), b"other bytes!!!")
    store = ObjectBlobs(bucket, tmp_path / "cache")
    assert store.has_complete(digest, len(data))  # the size matches: a cheap check passes
    assert not store.verify(digest)
    with pytest.raises(StoreError, match="does not match its name"):
        store.get(digest)
    assert not store.path(digest).exists()
    # Storing the real bytes repairs it (an old object is re-uploaded, not trusted).
    store.put_bytes(data)
    assert ObjectBlobs(bucket, tmp_path / "cache2").verify(digest)


def test_done_needs_the_bucket_copy(bucket: str, tmp_path: Path) -> None:
    store = ObjectBlobs(bucket, tmp_path / "cache")
    journal = _journal_with(store, tmp_path / "state.db")
    try:
        aid = journal.record_intent(
            "a" * 64, step="s", recipe="r.yaml", backend="x", request={}, seed=1
        )
        journal.record_submitted(aid, "task-1", None)
        only_cached = store.cache.put_bytes(b"never uploaded")
        with pytest.raises(StoreError, match="store the image before marking it done"):
            journal.record_done(
                aid, [ResultRecord(0, only_cached.sha256, only_cached.size, 8, 8, "")], 1
            )
    finally:
        journal.close()


def test_errors_name_the_bucket_never_the_credentials(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAMARKERKEYID12345")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "MARKERSECRETVALUE")
    store = ObjectBlobs("s3://no-such-bucket-here/p", tmp_path / "cache")
    with pytest.raises(StoreError) as caught:
        store.put_bytes(b"data")
    text = str(caught.value)
    assert "s3://no-such-bucket-here/p" in text
    assert "MARKERSECRETVALUE" not in text and "AKIAMARKERKEYID12345" not in text
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    store = ObjectBlobs(s3_bucket, tmp_path / "cache", store=None)
    with pytest.raises(StoreError, match="check the bucket, the AWS_"):
        store.has(sha(b"x"))


@pytest.fixture
def many(bucket: str, tmp_path: Path) -> Iterator[ObjectBlobs]:
    store = ObjectBlobs(bucket, tmp_path / "cache")
    for i in range(30):
        store.put_bytes(f"blob {i}".encode())
    yield store


def test_listing_pages_through_the_bucket(many: ObjectBlobs, bucket: str, tmp_path: Path) -> None:
    put_raw(bucket, "team/wan/objects/sha256/zz/not-ours", b"x")  # another tool's object
    fresh = ObjectBlobs(bucket, tmp_path / "other")
    assert sorted(fresh) == sorted(sha(f"blob {i}".encode()) for i in range(30))
    assert all(fresh.size(d) is not None for d in fresh)
