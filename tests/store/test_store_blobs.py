from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from wanrecipe.errors import StoreError
from wanrecipe.store import Blob, BlobNotFound, BlobStore, sha256_file

DATA = b"\x89PNG fake image bytes " * 1000
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "objects")


def tmp_files(store: BlobStore) -> list[Path]:
    return list((store.root / "tmp").iterdir())


def test_put_bytes_names_the_blob_by_its_hash(store: BlobStore):
    blob = store.put_bytes(DATA)
    assert blob == Blob(SHA, len(DATA), store.root / SHA[:2] / SHA[2:])
    assert blob.path.read_bytes() == DATA
    assert store.path(SHA) == blob.path
    assert store.has(SHA) and store.verify(SHA)
    assert list(store) == [SHA]
    assert tmp_files(store) == []


def test_blobs_are_read_only(store: BlobStore):
    mode = stat.S_IMODE(store.put_bytes(DATA).path.stat().st_mode)
    assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0


def test_put_is_idempotent(store: BlobStore):
    first = store.put_bytes(DATA)
    inode = first.path.stat().st_ino
    assert store.put_bytes(DATA) == first
    assert first.path.stat().st_ino == inode  # the existing blob was kept, not rewritten
    assert list(store) == [SHA] and tmp_files(store) == []


def test_put_refreshes_mtime_of_existing_blob(store: BlobStore):
    blob = store.put_bytes(DATA)
    os.utime(blob.path, (1, 1))
    store.put_bytes(DATA)
    assert blob.path.stat().st_mtime > time.time() - 60  # gc's grace period sees it as fresh


def test_put_repairs_a_truncated_blob(store: BlobStore):
    blob = store.put_bytes(DATA)
    blob.path.chmod(0o644)
    blob.path.write_bytes(DATA[:10])
    assert not store.verify(SHA)
    store.put_bytes(DATA)
    assert store.verify(SHA)


def test_put_file_copies_and_keeps_source(store: BlobStore, tmp_path: Path):
    src = tmp_path / "in.png"
    src.write_bytes(DATA)
    assert store.put_file(src) == Blob(SHA, len(DATA), store.path(SHA))
    assert src.read_bytes() == DATA
    assert store.verify(SHA) and tmp_files(store) == []


def test_put_file_move_renames_source_into_store(store: BlobStore, tmp_path: Path):
    src = tmp_path / "download.part"
    src.write_bytes(DATA)
    inode = src.stat().st_ino
    blob = store.put_file(src, move=True)
    assert not src.exists()
    assert blob.path.stat().st_ino == inode  # renamed, not copied
    assert store.verify(SHA) and tmp_files(store) == []


def test_put_file_move_of_known_content_drops_the_source(store: BlobStore, tmp_path: Path):
    store.put_bytes(DATA)
    src = tmp_path / "again.part"
    src.write_bytes(DATA)
    store.put_file(src, move=True)
    assert not src.exists() and tmp_files(store) == [] and list(store) == [SHA]


def test_put_file_move_across_filesystems_copies(store: BlobStore, tmp_path: Path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem at /dev/shm")
    src = shm / f"wanrecipe-test-{os.getpid()}.part"
    src.write_bytes(DATA)
    try:
        blob = store.put_file(src, move=True)
        assert not src.exists()
    finally:
        src.unlink(missing_ok=True)
    assert blob.sha256 == SHA and store.verify(SHA) and tmp_files(store) == []


def test_put_file_missing_source_leaves_nothing(store: BlobStore, tmp_path: Path):
    for move in (False, True):
        with pytest.raises(FileNotFoundError):
            store.put_file(tmp_path / "nope", move=move)
    assert tmp_files(store) == [] and list(store) == []


def test_big_file_is_hashed_in_chunks(store: BlobStore, tmp_path: Path):
    data = os.urandom(3 * (1 << 20) + 17)
    src = tmp_path / "big"
    src.write_bytes(data)
    blob = store.put_file(src)
    assert blob.sha256 == hashlib.sha256(data).hexdigest() == sha256_file(blob.path)
    assert blob.size == len(data)


def test_verify_detects_corruption_and_absence(store: BlobStore):
    blob = store.put_bytes(DATA)
    blob.path.chmod(0o644)
    blob.path.write_bytes(DATA.replace(b"fake", b"FAKE"))
    assert store.has(SHA) and not store.verify(SHA)
    other = hashlib.sha256(b"other").hexdigest()
    assert not store.has(other) and not store.verify(other)


def test_has_complete_checks_size(store: BlobStore):
    store.put_bytes(DATA)
    assert store.has_complete(SHA, len(DATA))
    assert not store.has_complete(SHA, len(DATA) - 1)
    assert not store.has_complete(hashlib.sha256(b"x").hexdigest(), 1)


@pytest.mark.parametrize("bad", ["", "../" + "a" * 61, SHA.upper(), SHA[:-1], SHA + "0"])
def test_bad_digests_are_refused(store: BlobStore, bad: str):
    with pytest.raises(ValueError, match="sha256"):
        store.path(bad)


def test_export_hard_links_atomically_replacing_dest(store: BlobStore, tmp_path: Path):
    blob = store.put_bytes(DATA)
    dest = tmp_path / "run" / "out" / "final.png"
    assert store.export(SHA, dest) == dest
    assert dest.stat().st_ino == blob.path.stat().st_ino
    # Exporting again over an existing (even read-only, unrelated) file replaces it.
    other = store.put_bytes(b"other")
    store.export(other.sha256, dest)
    assert dest.read_bytes() == b"other"
    store.export(other.sha256, dest)  # same inode already: no-op
    assert [p.name for p in dest.parent.iterdir()] == ["final.png"]


def test_export_copy_is_independent_and_writable(store: BlobStore, tmp_path: Path):
    store.put_bytes(DATA)
    dest = tmp_path / "copy.png"
    store.export(SHA, dest, link=False)
    assert dest.stat().st_ino != store.path(SHA).stat().st_ino
    dest.write_bytes(b"edited")
    assert store.verify(SHA)


def test_export_across_filesystems_falls_back_to_copy(store: BlobStore, tmp_path: Path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem at /dev/shm")
    store.put_bytes(DATA)
    dest = shm / f"wanrecipe-export-{os.getpid()}.png"
    try:
        store.export(SHA, dest)
        assert dest.read_bytes() == DATA
    finally:
        dest.unlink(missing_ok=True)


def test_export_missing_blob(store: BlobStore, tmp_path: Path):
    with pytest.raises(BlobNotFound) as info:
        store.export(SHA, tmp_path / "x.png")
    assert isinstance(info.value, StoreError) and isinstance(info.value, LookupError)
    assert not (tmp_path / "x.png").exists()


def test_remove_and_sizes(store: BlobStore):
    store.put_bytes(DATA)
    assert store.size(SHA) == len(DATA) and store.mtime(SHA) is not None
    assert store.remove(SHA) == len(DATA)
    assert store.remove(SHA) == 0
    assert store.size(SHA) is None and store.mtime(SHA) is None and list(store) == []


def test_iteration_ignores_strays(store: BlobStore):
    store.put_bytes(b"a")
    store.put_bytes(b"b")
    (store.root / "tmp" / "x.part").write_bytes(b"partial")
    (store.root / "zz").mkdir()
    (store.root / "README").write_text("not a blob")
    assert sorted(store) == sorted(hashlib.sha256(x).hexdigest() for x in (b"a", b"b"))


def test_clean_tmp_spares_young_files(store: BlobStore):
    old = store.root / "tmp" / "old.part"
    young = store.root / "tmp" / "young.part"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.clean_tmp(3600) == 1
    assert not old.exists() and young.exists()


def test_put_file_move_of_a_directory_fails_cleanly(store: BlobStore, tmp_path: Path):
    src = tmp_path / "not-a-file"
    src.mkdir()
    (src / "inner").write_bytes(DATA)
    with pytest.raises(OSError):
        store.put_file(src, move=True)
    assert (src / "inner").read_bytes() == DATA and tmp_files(store) == [] and list(store) == []
