from __future__ import annotations

import asyncio
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
    Attempt,
    BlobStore,
    InvalidTransition,
    Journal,
    KeyBusy,
    ResultRecord,
    StateDir,
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


def test_intent_round_trips_every_field(journal: Journal, clock: Clock):
    key = k("a")
    aid = intent(journal, key, seed=42)
    a = journal.get(aid)
    assert a == Attempt(
        id=aid,
        key=key,
        step="colorize",
        recipe="recipes/r.yaml",
        backend="127.0.0.1",
        request={"function": "colorization", "prompt": "blue sky", "seed": 42},
        seed=42,
        state="intent",
        task_id=None,
        request_id=None,
        created_at=clock.now,
        submitted_at=None,
        finished_at=None,
        usage_images=None,
        error_code=None,
        error_message=None,
        owner_host=a.owner_host,
        owner_pid=os.getpid(),
    )
    assert a.dangling and not a.finished


def test_intent_is_visible_to_another_connection_at_once(journal: Journal, tmp_path: Path):
    aid = intent(journal, k("a"))
    raw = sqlite3.connect(tmp_path / "state.db")
    try:
        assert raw.execute("SELECT state FROM attempts WHERE id = ?", (aid,)).fetchone() == (
            "intent",
        )
    finally:
        raw.close()


def test_request_must_be_json(journal: Journal):
    with pytest.raises(TypeError):
        journal.record_intent(
            k("a"), step="s", recipe="r", backend="b", request={"x": b"1"}, seed=1
        )
    assert journal.attempts() == []


def test_full_lifecycle(journal: Journal, blobs: BlobStore, clock: Clock):
    key = k("a")
    aid = intent(journal, key)
    clock.now += 1
    journal.record_submitted(aid, "task-1", "req-1")
    a = journal.get(aid)
    assert (a.state, a.task_id, a.request_id, a.submitted_at) == (
        "submitted",
        "task-1",
        "req-1",
        clock.now,
    )
    clock.now += 9
    results = [result(blobs, b"one", 0), result(blobs, b"two", 1)]
    journal.record_done(aid, results, 2)
    a = journal.get(aid)
    assert (a.state, a.finished_at, a.usage_images, a.results) == (
        "done",
        clock.now,
        2,
        tuple(results),
    )
    assert a.finished and not a.dangling


def test_failed_and_abandoned(journal: Journal):
    a1 = intent(journal, k("a"))
    journal.record_failed(a1, "InvalidParameter", "bad size")  # refused at submit
    a2 = intent(journal, k("b"))
    journal.record_submitted(a2, "t2", None)
    journal.record_failed(a2, "InternalError", "boom")
    a3 = intent(journal, k("c"))
    journal.record_abandoned(a3, "interrupted before submit")
    got = {a.id: (a.state, a.error_code, a.error_message) for a in journal.attempts()}
    assert got == {
        a1: ("failed", "InvalidParameter", "bad size"),
        a2: ("failed", "InternalError", "boom"),
        a3: ("abandoned", "abandoned", "interrupted before submit"),
    }


@pytest.mark.parametrize(
    ("path", "action", "message"),
    [
        ([], "done", "is intent; it cannot become done"),
        (["submitted"], "submitted", "is submitted; it cannot become submitted"),
        (["failed"], "submitted", "is failed; it cannot become submitted"),
        (["failed"], "abandoned", "is failed; it cannot become abandoned"),
        (["submitted", "done"], "failed", "is done; it cannot become failed"),
        (["submitted", "done"], "abandoned", "is done; it cannot become abandoned"),
    ],
)
def test_invalid_transitions(
    journal: Journal, blobs: BlobStore, path: list[str], action: str, message: str
):
    aid = intent(journal, k("a"))
    res = [result(blobs, b"x")]
    steps = {
        "submitted": lambda: journal.record_submitted(aid, "t", "r"),
        "done": lambda: journal.record_done(aid, res, 1),
        "failed": lambda: journal.record_failed(aid, "E", "m"),
        "abandoned": lambda: journal.record_abandoned(aid, "why"),
    }
    for s in path:
        steps[s]()
    before = journal.get(aid)
    with pytest.raises(InvalidTransition, match=f"attempt {aid} {message}"):
        steps[action]()
    assert journal.get(aid) == before


def test_abandoned_attempt_can_still_be_reconciled(journal: Journal, blobs: BlobStore):
    aid = intent(journal, k("a"))
    journal.record_abandoned(aid, "submit timed out")
    journal.record_submitted(aid, "found-by-listing", None)  # reconciliation found the task
    journal.record_abandoned(aid, "too slow")
    journal.record_done(aid, [result(blobs, b"x")], 1)  # ... and it succeeded after all
    assert journal.get(aid).state == "done"


def test_done_twice_is_a_no_op(journal: Journal, blobs: BlobStore):
    aid = intent(journal, k("a"))
    journal.record_submitted(aid, "t", "r")
    first = [result(blobs, b"x")]
    journal.record_done(aid, first, 1)
    journal.record_done(aid, [result(blobs, b"y")], 1)
    assert journal.get(aid).results == tuple(first)


def test_unknown_attempt(journal: Journal):
    with pytest.raises(StoreError, match="no attempt 99"):
        journal.record_submitted(99, "t", "r")
    with pytest.raises(StoreError, match="no attempt 99"):
        journal.get(99)


def test_done_needs_the_blobs_first(journal: Journal, blobs: BlobStore):
    aid = intent(journal, k("a"))
    journal.record_submitted(aid, "t", "r")
    missing = ResultRecord(0, hashlib.sha256(b"never stored").hexdigest(), 12)
    with pytest.raises(StoreError, match="store the image before marking it done"):
        journal.record_done(aid, [missing], 1)
    truncated = replace(result(blobs, b"abc"), size=4)
    with pytest.raises(StoreError, match="with 4 bytes"):
        journal.record_done(aid, [truncated], 1)
    with pytest.raises(ValueError, match="at least one result"):
        journal.record_done(aid, [], 0)
    r = result(blobs, b"abc")
    with pytest.raises(ValueError, match="unique"):
        journal.record_done(aid, [r, r], 2)
    assert journal.get(aid).state == "submitted"


# -- lookups ------------------------------------------------------------------------------------


def test_lookup_done(journal: Journal, blobs: BlobStore, clock: Clock):
    key = k("a")
    assert journal.lookup_done(key) is None
    intent(journal, key)  # unfinished attempts are no hit
    old = finish(journal, blobs, key, b"old")
    clock.now += 5
    new = finish(journal, blobs, key, b"new")
    hit = journal.lookup_done(key)
    assert hit is not None and hit.attempt.id == new
    assert hit.sha256s == (hashlib.sha256(b"new").hexdigest(),)
    assert hit.results[0].width == 1024
    # The newest one's image vanished: fall back to the older complete one.
    blobs.remove(hashlib.sha256(b"new").hexdigest())
    hit = journal.lookup_done(key)
    assert hit is not None and hit.attempt.id == old
    # A truncated blob is no hit either.
    path = blobs.path(hashlib.sha256(b"old").hexdigest())
    path.chmod(0o644)
    path.write_bytes(b"ol")
    assert journal.lookup_done(key) is None
    assert journal.lookup_done(k("other")) is None


def test_in_flight(journal: Journal, blobs: BlobStore, clock: Clock):
    key = k("a")
    stale = intent(journal, key)
    journal.record_submitted(stale, "t-stale", None)
    clock.now += 20 * 3600
    young = intent(journal, key)  # intent at 20 h; submitted at 23 h
    clock.now += 3 * 3600
    journal.record_submitted(young, "t-young", None)
    dangling = intent(journal, key)
    finish(journal, blobs, key)
    failed = intent(journal, key)
    journal.record_failed(failed, "E", "m")
    intent(journal, k("other key"))
    clock.now += 2 * 3600  # stale was submitted 25 h ago, young 2 h ago
    got = journal.in_flight(key)
    assert [(a.id, a.state, a.dangling) for a in got] == [
        (young, "submitted", False),
        (dangling, "intent", True),
    ]
    assert [a.id for a in journal.in_flight(key, max_age_s=3600)] == []
    assert [a.id for a in journal.in_flight(key, max_age_s=30 * 3600)] == [stale, young, dangling]
    assert {a.id for a in journal.unfinished()} >= {stale, young, dangling}


def test_attempts_filters(journal: Journal, blobs: BlobStore):
    a = intent(journal, k("a"), step="one")
    b = finish(journal, blobs, k("b"))
    c = intent(journal, k("a"), step="two")
    assert [x.id for x in journal.attempts()] == [a, b, c]
    assert [x.id for x in journal.attempts(step="one")] == [a]
    assert [x.id for x in journal.attempts(key=k("a"))] == [a, c]
    assert [x.id for x in journal.attempts(key=k("a"), step="two")] == [c]
    assert [x.id for x in journal.attempts(state="done")] == [b]
    assert journal.attempts(state="done")[0].results != ()
    assert [x.id for x in journal.attempts(recipe="other.yaml")] == []


def test_cache_status(journal: Journal, blobs: BlobStore, clock: Clock):
    cached, reattach, dangling, miss, expired = (k(n) for n in "abcde")
    journal.record_submitted(intent(journal, expired), "t-old", None)
    old_intent = intent(journal, dangling)
    clock.now += 25 * 3600  # everything above is now out of reach
    finish(journal, blobs, cached)
    intent(journal, cached)  # a cached key stays cached even with an attempt in flight
    journal.record_submitted(intent(journal, reattach), "t", None)
    intent(journal, reattach)
    young_intent = intent(journal, dangling)
    journal.record_failed(intent(journal, miss), "E", "m")  # errors are never cached
    got = journal.cache_status([cached, reattach, dangling, miss, expired, cached])
    assert {key: s.status for key, s in got.items()} == {
        cached: "cached",
        reattach: "reattach",
        dangling: "dangling",
        miss: "miss",
        expired: "miss",
    }
    assert list(got) == [cached, reattach, dangling, miss, expired]
    assert got[cached].done is not None and got[cached].done.results
    assert [a.state for a in got[reattach].in_flight] == ["submitted", "intent"]
    assert [a.id for a in got[dangling].in_flight] == [young_intent]
    assert old_intent not in [a.id for a in got[dangling].in_flight]
    assert got[miss].in_flight == () and got[miss].done is None


def test_cache_status_many_keys(journal: Journal, blobs: BlobStore):
    keys = [k(f"p{i}") for i in range(1203)]
    done = set(keys[::100])
    for key in done:
        finish(journal, blobs, key, key.encode())
    got = journal.cache_status(keys)
    assert {key for key, s in got.items() if s.status == "cached"} == done
    assert len(got) == len(keys)


# -- maintenance --------------------------------------------------------------------------------


def age(blobs: BlobStore, data: bytes, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(blobs.path(hashlib.sha256(data).hexdigest()), (t, t))


def test_gc(journal: Journal, blobs: BlobStore):
    keep, drop = k("keep"), k("drop")
    kept = finish(journal, blobs, keep, b"kept")
    finish(journal, blobs, drop, b"dropped")
    failed = intent(journal, drop)
    journal.record_failed(failed, "E", "m")
    pending = intent(journal, drop)  # may have been billed: never forgotten by gc
    blobs.put_bytes(b"young orphan")  # maybe a concurrent run about to record it done
    blobs.put_bytes(b"old orphan")
    for data in (b"kept", b"dropped", b"old orphan"):
        age(blobs, data, 7200)
    report = journal.gc([keep])
    assert (report.attempts_removed, report.blobs_removed) == (2, 2)
    assert report.bytes_freed == len(b"dropped") + len(b"old orphan")
    assert {a.id for a in journal.attempts()} == {kept, pending}
    assert sorted(blobs) == sorted(
        hashlib.sha256(d).hexdigest() for d in (b"kept", b"young orphan")
    )
    assert journal.lookup_done(keep) is not None


def test_shared_blob_survives_gc_of_one_referrer(journal: Journal, blobs: BlobStore):
    finish(journal, blobs, k("a"), b"same")
    finish(journal, blobs, k("b"), b"same")
    age(blobs, b"same", 7200)
    assert journal.gc([k("b")]).blobs_removed == 0
    assert journal.lookup_done(k("b")) is not None


def test_clear(journal: Journal, blobs: BlobStore):
    finish(journal, blobs, k("a"), b"a")
    pending = intent(journal, k("b"))
    blobs.put_bytes(b"orphan")
    report = journal.clear()
    assert (report.attempts_removed, report.blobs_removed) == (1, 2)
    assert [a.id for a in journal.attempts()] == [pending]
    assert journal.clear(include_unfinished=True).attempts_removed == 1
    assert journal.attempts() == [] and list(blobs) == []


def test_stats(journal: Journal, blobs: BlobStore):
    finish(journal, blobs, k("a"), b"12345")
    finish(journal, blobs, k("a"), b"12345")
    intent(journal, k("b"))
    s = journal.stats()
    assert (s.attempts_by_state, s.keys_cached, s.blobs, s.blob_bytes) == (
        {"done": 2, "intent": 1},
        1,
        1,
        5,
    )


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


def test_threads_share_one_journal(journal: Journal, blobs: BlobStore):
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                key = k(f"{t}-{i}")
                aid = intent(journal, key)
                journal.record_submitted(aid, f"t{t}-{i}", None)
                journal.record_done(aid, [result(blobs, f"{t}-{i}".encode())], 1)
                assert journal.lookup_done(key) is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert journal.stats().attempts_by_state == {"done": 150}


async def test_asyncio_to_thread(journal: Journal, blobs: BlobStore):
    async def task(i: int) -> None:
        key = k(f"async-{i}")
        aid = await asyncio.to_thread(intent, journal, key)
        await asyncio.to_thread(journal.record_submitted, aid, f"t{i}", None)
        res = await asyncio.to_thread(result, blobs, f"a{i}".encode())
        journal.record_done(aid, [res], 1)  # direct call from the loop is fine too

    await asyncio.gather(*(task(i) for i in range(20)))
    assert len(journal.attempts(state="done")) == 20


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


def test_arguments_are_checked(journal: Journal):
    with pytest.raises(ValueError, match="not a content key"):
        intent(journal, "https://example.invalid/x.png")
    aid = intent(journal, k("a"))
    with pytest.raises(ValueError, match="task id"):
        journal.record_submitted(aid, "", None)
    assert journal.get(aid).state == "intent"


def test_public_names_are_exported():
    import pkgutil

    import wanrecipe.store as store

    modules = {m.name for m in pkgutil.iter_modules(store.__path__)}
    public = {n for n in dir(store) if not n.startswith("_")} - {"annotations"} - modules
    assert public == set(store.__all__)


def test_exclusive_intent(tmp_path: Path, journal: Journal, blobs: BlobStore, clock: Clock):
    key = k("a")
    first = intent(journal, key)
    with Journal(tmp_path / "state.db", blobs, clock=clock) as other:  # e.g. a second run
        with pytest.raises(
            KeyBusy, match=f"attempt {first} \\(intent, pid {os.getpid()}\\)"
        ) as info:
            other.record_intent(
                key, step="s", recipe="r", backend="b", request={}, seed=1, exclusive=True
            )
        assert [a.id for a in info.value.attempts] == [first] and info.value.key == key
        assert len(journal.attempts(key=key)) == 1
        # Not exclusive: recorded anyway (the caller decided to submit again).
        other.record_intent(key, step="s", recipe="r", backend="b", request={}, seed=1)


def test_exclusive_intent_ignores_dead_old_and_finished(
    journal: Journal, blobs: BlobStore, clock: Clock, tmp_path: Path
):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = k("a")
    crashed = intent(journal, key)
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute("UPDATE attempts SET owner_pid = ? WHERE id = ?", (int(dead.stdout), crashed))
    raw.commit()
    raw.close()
    journal.record_failed(intent(journal, key), "E", "m")
    journal.record_abandoned(intent(journal, key), "gave up")
    old = intent(journal, key)
    journal.record_submitted(old, "t-old", None)
    clock.now += 25 * 3600  # the old task has expired
    aid = journal.record_intent(
        key, step="s", recipe="r", backend="b", request={}, seed=1, exclusive=True
    )
    assert aid > old
    # A done attempt blocks while its blobs are there, not once they are gone.
    key2 = k("b")
    finish(journal, blobs, key2, b"img-b")
    with pytest.raises(KeyBusy):
        journal.record_intent(
            key2, step="s", recipe="r", backend="b", request={}, seed=1, exclusive=True
        )
    blobs.remove(hashlib.sha256(b"img-b").hexdigest())
    journal.record_intent(
        key2, step="s", recipe="r", backend="b", request={}, seed=1, exclusive=True
    )


def test_exclusive_intent_blocked_by_a_crashed_runs_submitted_task(
    journal: Journal, tmp_path: Path
):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = k("a")
    submitted = intent(journal, key)
    journal.record_submitted(submitted, "t", None)
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute("UPDATE attempts SET owner_pid = ?", (int(dead.stdout),))
    raw.commit()
    raw.close()
    with pytest.raises(KeyBusy, match="submitted"):  # re-attach, never pay again
        journal.record_intent(
            key, step="s", recipe="r", backend="b", request={}, seed=1, exclusive=True
        )
