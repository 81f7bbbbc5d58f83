"""``--blobs URL`` / ``WANRECIPE_BLOBS``: which store a value opens, and the values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from wanrecipe.errors import StoreError, UsageError
from wanrecipe.store import BlobStore, StateDir
from wanrecipe.store.blobs_s3 import ObjectBlobs, split_s3_url
from wanrecipe.store.blobs_url import check_blobs_url, open_blobs


def test_default_is_the_state_dirs_objects(tmp_path: Path) -> None:
    store = open_blobs(None, tmp_path / "state", env={})
    assert isinstance(store, BlobStore) and store.root == tmp_path / "state" / "objects"


def test_a_directory_or_file_url(tmp_path: Path) -> None:
    store = open_blobs(str(tmp_path / "shared"), tmp_path / "state", env={})
    assert isinstance(store, BlobStore) and store.root == tmp_path / "shared"
    store = open_blobs(f"file://{tmp_path}/by%20url", tmp_path / "state", env={})
    assert isinstance(store, BlobStore) and store.root == tmp_path / "by url"


def test_the_env_var_unless_the_flag_is_given(tmp_path: Path) -> None:
    env = {"WANRECIPE_BLOBS": str(tmp_path / "from-env")}
    store = open_blobs(None, tmp_path / "state", env=env)
    assert isinstance(store, BlobStore) and store.root == tmp_path / "from-env"
    store = open_blobs(str(tmp_path / "flag"), tmp_path / "state", env=env)
    assert isinstance(store, BlobStore) and store.root == tmp_path / "flag"


def test_a_bucket_is_cached_in_the_state_dir(tmp_path: Path) -> None:
    store = open_blobs("s3://team-bucket/wan/recipe/", tmp_path / "state", env={})
    assert isinstance(store, ObjectBlobs)
    assert store.location == "s3://team-bucket/wan/recipe"
    assert store.cache.root == tmp_path / "state" / "blobcache"


def test_state_dir_opens_the_given_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANRECIPE_BLOBS", str(tmp_path / "env-blobs"))
    with StateDir.open(tmp_path / "state") as state:
        assert state.blobs.location == str(tmp_path / "env-blobs")
        assert state.journal.blobs is state.blobs
    with StateDir.open(tmp_path / "state", blobs=tmp_path / "flag-blobs") as state:
        assert state.blobs.location == str(tmp_path / "flag-blobs")
    monkeypatch.delenv("WANRECIPE_BLOBS")
    with StateDir.open(tmp_path / "state") as state:
        assert state.blobs.location == str(tmp_path / "state" / "objects")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gs://bucket/x", "gs:// is not supported; give a directory or s3://bucket/prefix"),
        ("s3://", "not a bucket name"),
        ("s3://Bad_Bucket/x", "not a bucket name"),
        ("s3://bucket/../x", "may not contain . or .."),
        ("s3://bucket/x?endpoint=http://evil", "takes no credentials or options"),
    ],
)
def test_refused_values(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        check_blobs_url(value, "WANRECIPE_BLOBS")
    assert str(caught.value).startswith("WANRECIPE_BLOBS")


def test_credentials_in_the_url_are_refused_and_never_repeated(tmp_path: Path) -> None:
    url = "s3://AKIAEXAMPLE:verysecret@bucket/prefix"
    with pytest.raises(UsageError) as caught:
        open_blobs(url, tmp_path, env={})
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)
    assert "verysecret" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)
    with pytest.raises(StoreError) as raw:
        split_s3_url(url)
    assert "verysecret" not in str(raw.value)


def test_a_blobs_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match=r"--blobs: .*afile is not a directory"):
        open_blobs(str(tmp_path / "afile"), tmp_path / "state", env={})
