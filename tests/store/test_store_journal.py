from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from wanrecipe.errors import StoreError
from wanrecipe.store import (
    BlobStore,
    Journal,
    KeyBusy,
    ResultRecord,
    StateDir,
    WouldWait,
    content_key,
)
from wanrecipe.store.journal import SCHEMA_VERSION


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "objects")


@pytest.fixture
def journal(tmp_path: Path, blobs: BlobStore, clock: Clock):
    with Journal(tmp_path / "state.db", blobs, clock=clock) as j:
        yield j


def k(name: str) -> str:
    return content_key(
        model="wanx2.1-imageedit",
        function="colorization",
        prompt=name,
        parameters={"seed": 1},
        inputs={},
    )


def intent(journal: Journal, key: str, step: str = "colorize", seed: int = 1) -> int:
    return journal.record_intent(
        key,
        step=step,
        recipe="recipes/r.yaml",
        backend="127.0.0.1",
        request={"function": "colorization", "prompt": "blue sky", "seed": seed},
        seed=seed,
    )


def result(blobs: BlobStore, data: bytes, index: int = 0) -> ResultRecord:
    blob = blobs.put_bytes(data)
    return ResultRecord(
        index, blob.sha256, blob.size, 1024, 768, "http://127.0.0.1/x.png?<redacted>"
    )


def finish(journal: Journal, blobs: BlobStore, key: str, data: bytes = b"img") -> int:
    aid = intent(journal, key)
    journal.record_submitted(aid, f"task-{aid}", f"req-{aid}")
    journal.record_done(aid, [result(blobs, data)], 1)
    return aid


# -- schema and pragmas -------------------------------------------------------------------------


def test_database_settings(journal: Journal, tmp_path: Path):
    raw = sqlite3.connect(tmp_path / "state.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
    conn = journal._conn  # per-connection settings can only be read on that connection
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopen_keeps_data_and_schema(tmp_path: Path, blobs: BlobStore, clock: Clock):
    with Journal(tmp_path / "state.db", blobs, clock=clock) as j:
        aid = intent(j, k("a"))
    with Journal(tmp_path / "state.db", blobs, clock=clock) as j:
        assert j.get(aid).state == "intent"


def test_newer_schema_is_refused(tmp_path: Path, blobs: BlobStore):
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this wanrecipe"):
        Journal(tmp_path / "state.db", blobs)


def test_garbage_database_is_a_store_error(tmp_path: Path, blobs: BlobStore):
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        Journal(tmp_path / "state.db", blobs)


# -- the protocol -------------------------------------------------------------------------------


def test_intent_is_visible_to_another_connection_at_once(journal: Journal, tmp_path: Path):
    aid = intent(journal, k("a"))
    raw = sqlite3.connect(tmp_path / "state.db")
    try:
        assert raw.execute("SELECT state FROM attempts WHERE id = ?", (aid,)).fetchone() == (
            "intent",
        )
    finally:
        raw.close()


# -- migrations --------------------------------------------------------------------------------


def test_a_v2_journal_with_two_live_attempts_of_a_key_is_migrated(
    tmp_path: Path, blobs: BlobStore, clock: Clock
):
    """An older wanrecipe let two live attempts share a key; v3's unique index cannot hold
    them both. One stays live (a submitted one first: it has a task to re-attach to), the
    others are abandoned with the reason, and the file opens."""
    with Journal(tmp_path / "state.db", blobs, clock=clock) as j:
        j.record_intent(k("x"), step="s", recipe="r", backend="b", request={}, seed=1)
    db = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    db.execute("DROP INDEX attempts_one_live")
    db.execute("PRAGMA user_version = 2")
    row = "'r', 'b', '{}', 1, ?, ?, ?, 'old-host', 1"
    insert = (
        "INSERT INTO attempts (key, step, recipe, backend, request_json, seed, state,"
        f" task_id, created_at, owner_host, owner_pid) VALUES (?, 's', {row})"
    )
    a, b = k("a"), k("b")
    ids = {}
    for name, key, state, task in (
        ("a_submitted", a, "submitted", "t-a"), ("a_intent", a, "intent", None),
        ("b_old", b, "intent", None), ("b_new", b, "intent", None),
    ):  # fmt: skip
        ids[name] = db.execute(insert, (key, state, task, clock.now)).lastrowid
    db.close()
    with Journal(tmp_path / "state.db", blobs, clock=clock) as j:
        states = {name: j.get(i).state for name, i in ids.items()}
        assert states == {
            "a_submitted": "submitted", "a_intent": "abandoned",
            "b_old": "abandoned", "b_new": "intent",
        }  # fmt: skip
        why = j.get(ids["b_old"]).error_message
        assert why == f"schema v3 allows one live attempt per key; attempt {ids['b_new']} was kept"
        with pytest.raises(KeyBusy):  # and the index holds from now on
            j.record_intent(b, step="s", recipe="r", backend="b", request={}, seed=1)
    raw = sqlite3.connect(tmp_path / "state.db")
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert (
            raw.execute("SELECT sql FROM sqlite_master WHERE name = 'attempts_one_live'")
            .fetchone()[0]
            .endswith("WHERE state IN ('intent', 'submitted')")
        )
    finally:
        raw.close()


# -- owners, threads, locks ---------------------------------------------------------------------


def test_owner_alive(journal: Journal):
    a = journal.get(intent(journal, k("a")))
    assert a.owner_alive() is True
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert replace(a, owner_pid=int(dead.stdout)).owner_alive() is False
    assert replace(a, owner_host="some-other-host.invalid").owner_alive() is None


def test_busy_timeout(tmp_path: Path, blobs: BlobStore):
    with Journal(tmp_path / "state.db", blobs):
        pass
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with Journal(tmp_path / "state.db", blobs, busy_timeout_s=0.2) as j:
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="database is locked"):
                intent(j, k("a"))
            assert time.monotonic() - t0 >= 0.15
            threading.Timer(0.2, holder.execute, ("COMMIT",)).start()
            j2 = Journal(tmp_path / "state.db", blobs, busy_timeout_s=120)
            with j2:
                intent(j2, k("a"))  # waits for the lock instead of failing
    finally:
        holder.close()


def test_statedir_layout(tmp_path: Path):
    path = tmp_path / "deep" / ".wanrecipe"
    with StateDir.open(path) as sd:
        assert sd.path == path
        assert (path / ".gitignore").read_text() == "*\n"
        assert (path / "state.db").is_file() and (path / "objects").is_dir()
        sd.blobs.put_bytes(b"x")
    (path / ".gitignore").write_text("*\n# mine\n")
    with StateDir.open(path) as sd:
        assert (path / ".gitignore").read_text() == "*\n# mine\n"  # never overwritten
        assert list(sd.blobs) == [hashlib.sha256(b"x").hexdigest()]


def test_statedir_is_ignored_by_git(tmp_path: Path):
    git = subprocess.run(["git", "init", "-q", str(tmp_path)], capture_output=True)
    if git.returncode != 0:
        pytest.skip("git unavailable")
    with StateDir.open(tmp_path / ".wanrecipe") as sd:
        sd.blobs.put_bytes(b"x")
    (tmp_path / "recipe.yaml").write_text("version: 1\n")
    status = subprocess.run(
        ["git", "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout.splitlines() == ["?? recipe.yaml"]


def test_statedir_on_a_file(tmp_path: Path):
    (tmp_path / "f").write_text("")
    with pytest.raises(StoreError, match="not a directory"):
        StateDir.open(tmp_path / "f")


def test_statedir_cleans_old_tmp_files(tmp_path: Path):
    path = tmp_path / ".wanrecipe"
    StateDir.open(path).close()
    old = path / "objects" / "tmp" / "crashed.part"
    old.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    young = path / "objects" / "tmp" / "writing.part"
    young.write_bytes(b"partial")
    StateDir.open(path).close()
    assert not old.exists() and young.exists()


def test_public_names_are_exported():
    import pkgutil

    import wanrecipe.store as store

    modules = {m.name for m in pkgutil.iter_modules(store.__path__)}
    public = {n for n in dir(store) if not n.startswith("_")} - {"annotations"} - modules
    assert public == set(store.__all__)


def _quick_intent(journal: Journal, key: str) -> int:
    return journal.record_intent(
        key, step="s", recipe="recipes/r.yaml", backend="127.0.0.1", request={}, seed=1,
        quick=True,
    )  # fmt: skip


def test_a_quick_intent_never_waits_for_another_process_and_writes_nothing(
    journal: Journal, tmp_path: Path
) -> None:
    # Another writer (a connection of its own, as another process has) holds the database.
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        waited = time.monotonic()
        with pytest.raises(WouldWait):
            _quick_intent(journal, k("quick"))
        # At once, not after the 30 s busy timeout (a generous bound for a busy machine).
        assert time.monotonic() - waited < 5.0
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert journal.unfinished() == []
    # Free again: the same quick write goes through, and the busy timeout is back in place.
    attempt_id = _quick_intent(journal, k("quick"))
    assert journal.get(attempt_id).state == "intent"
    busy_ms = journal._db.conn.execute("PRAGMA busy_timeout").fetchone()[0]
    assert busy_ms == 30_000


def test_a_quick_intent_never_waits_for_another_thread(journal: Journal) -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with journal._db.write():
            held.set()
            release.wait(10)

    writer = threading.Thread(target=hold)
    writer.start()
    try:
        assert held.wait(10)
        with pytest.raises(WouldWait):
            _quick_intent(journal, k("thread"))
    finally:
        release.set()
        writer.join()
    assert journal.unfinished() == []
    assert journal.get(_quick_intent(journal, k("thread"))).state == "intent"
