"""The journal contract: one suite, run on SQLite and on Postgres (a fresh database per test).

Every operation of ``JournalOps``, the transitions that are refused, the one-live-attempt-per-key
claim (and the race for it), cache status, gc, heartbeats and orphan take-over. What only one
database has (SQLite's pragmas and file migrations, Postgres's schema lock and clock) is tested
in ``test_store_journal.py`` and at the end of this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from wanrecipe.errors import StoreError
from wanrecipe.store import (
    Attempt,
    BlobStore,
    InvalidTransition,
    Journal,
    JournalOps,
    KeyBusy,
    ResultRecord,
    WouldWait,
    content_key,
)
from wanrecipe.store.dialect import POLICY_QUERIES, queries
from wanrecipe.store.ops import OPERATIONS
from wanrecipe.store.pg_journal import PostgresJournal


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


Opener = Callable[..., Any]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "objects")


@pytest.fixture(params=["sqlite", "postgres"])
def opener(
    request: pytest.FixtureRequest, tmp_path: Path, blobs: BlobStore, clock: Clock
) -> Opener:
    """Opens another connection to the test's journal (as another run or worker would)."""
    if request.param == "sqlite":
        return lambda **kw: Journal(tmp_path / "state.db", blobs, **{"clock": clock, **kw})
    url = request.getfixturevalue("pg_url")
    return lambda **kw: PostgresJournal(url, blobs, **{"clock": clock, **kw})


@pytest.fixture
def journal(opener: Opener) -> Iterator[Any]:
    with opener() as j:
        yield j


def raw(journal: Any, sql: str) -> None:
    """A statement the journal would never run itself (to fake another host, a dead pid)."""
    journal._db.conn.execute(sql)


def dead_pid() -> int:
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout)


def k(name: str) -> str:
    return content_key(
        model="wanx2.1-imageedit", function="colorization", prompt=name,
        parameters={"seed": 1}, inputs={},
    )  # fmt: skip


def intent(journal: Any, key: str, step: str = "colorize", seed: int = 1, **kw: Any) -> int:
    return int(
        journal.record_intent(
            key, step=step, recipe="recipes/r.yaml", backend="127.0.0.1",
            request={"function": "colorization", "prompt": "blue sky", "seed": seed},
            seed=seed, **kw,
        )
    )  # fmt: skip


def result(blobs: BlobStore, data: bytes, index: int = 0) -> ResultRecord:
    blob = blobs.put_bytes(data)
    return ResultRecord(
        index, blob.sha256, blob.size, 1024, 768, "http://127.0.0.1/x.png?<redacted>"
    )


def finish(journal: Any, blobs: BlobStore, key: str, data: bytes = b"img") -> int:
    aid = intent(journal, key)
    journal.record_submitted(aid, f"task-{aid}", f"req-{aid}")
    journal.record_done(aid, [result(blobs, data)], 1)
    return aid


# -- the list of operations ------------------------------------------------------------------


def test_both_journals_offer_exactly_the_named_operations() -> None:
    for cls in (Journal, PostgresJournal):
        public = {n for n in dir(cls) if not n.startswith("_")}
        assert public == OPERATIONS, cls
    for dialect in ("sqlite", "postgres"):
        assert set(queries(dialect)) >= POLICY_QUERIES, dialect


def test_the_journal_is_a_journal_ops(journal: Any) -> None:
    assert isinstance(journal, JournalOps)
    assert journal.dialect in ("sqlite", "postgres")
    assert "@" not in journal.location or ":" not in journal.location.split("@")[0][13:]


# -- the protocol ----------------------------------------------------------------------------


def test_intent_round_trips_every_field(journal: Any, clock: Clock) -> None:
    key = k("a")
    aid = intent(journal, key, seed=42)
    a = journal.get(aid)
    assert a == Attempt(
        id=aid, key=key, step="colorize", recipe="recipes/r.yaml", backend="127.0.0.1",
        request={"function": "colorization", "prompt": "blue sky", "seed": 42}, seed=42,
        state="intent", task_id=None, request_id=None, created_at=clock.now,
        submitted_at=None, finished_at=None, usage_images=None, error_code=None,
        error_message=None, owner_host=a.owner_host, owner_pid=os.getpid(),
    )  # fmt: skip
    assert a.dangling and not a.finished


def test_intent_is_visible_to_another_connection_at_once(journal: Any, opener: Opener) -> None:
    aid = intent(journal, k("a"))
    with opener() as other:
        assert other.get(aid).state == "intent"


def test_request_must_be_json(journal: Any) -> None:
    with pytest.raises(TypeError):
        journal.record_intent(
            k("a"), step="s", recipe="r", backend="b", request={"x": b"1"}, seed=1
        )
    assert journal.attempts() == []


def test_full_lifecycle(journal: Any, blobs: BlobStore, clock: Clock) -> None:
    aid = intent(journal, k("a"))
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


def test_known_tasks_names_only_the_task_ids_asked_about(journal: Any, blobs: BlobStore) -> None:
    done = finish(journal, blobs, k("a"))
    failed = intent(journal, k("b"))
    journal.record_submitted(failed, "task-b", None)
    journal.record_failed(failed, "InvalidParameter", "bad")
    intent(journal, k("c"))  # no task id yet
    asked = [f"task-{done}", "task-b", "task-elsewhere", "task-b"]
    assert journal.known_tasks(asked) == {f"task-{done}", "task-b"}
    assert journal.known_tasks([]) == set()
    assert journal.known_tasks(["task-elsewhere"]) == set()


def test_failed_and_abandoned(journal: Any) -> None:
    a1 = intent(journal, k("a"))
    journal.record_failed(a1, "InvalidParameter", "bad size")
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
        (["abandoned", "submitted", "done"], "submitted", "is done; it cannot become submitted"),
    ],
)
def test_refused_transitions(
    journal: Any, blobs: BlobStore, path: list[str], action: str, message: str
) -> None:
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


def test_abandoned_attempt_can_still_be_reconciled(journal: Any, blobs: BlobStore) -> None:
    aid = intent(journal, k("a"))
    journal.record_abandoned(aid, "submit timed out")
    journal.record_submitted(aid, "found-by-listing", None)
    journal.record_abandoned(aid, "too slow")
    journal.record_done(aid, [result(blobs, b"x")], 1)
    assert journal.get(aid).state == "done"


def test_done_twice_is_a_no_op(journal: Any, blobs: BlobStore) -> None:
    aid = intent(journal, k("a"))
    journal.record_submitted(aid, "t", "r")
    first = [result(blobs, b"x")]
    journal.record_done(aid, first, 1)
    journal.record_done(aid, [result(blobs, b"y")], 1)
    assert journal.get(aid).results == tuple(first)


def test_unknown_attempt(journal: Any) -> None:
    with pytest.raises(StoreError, match="no attempt 99"):
        journal.record_submitted(99, "t", "r")
    with pytest.raises(StoreError, match="no attempt 99"):
        journal.get(99)


def test_done_needs_the_blobs_first(journal: Any, blobs: BlobStore) -> None:
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


def test_arguments_are_checked(journal: Any) -> None:
    with pytest.raises(ValueError, match="not a content key"):
        intent(journal, "https://example.invalid/x.png")
    aid = intent(journal, k("a"))
    with pytest.raises(ValueError, match="task id"):
        journal.record_submitted(aid, "", None)
    assert journal.get(aid).state == "intent"


# -- one live attempt per key: the claim -----------------------------------------------------


@pytest.mark.parametrize("exclusive", [False, True])
def test_a_live_attempt_holds_its_key(journal: Any, opener: Opener, exclusive: bool) -> None:
    key = k("a")
    first = intent(journal, key)
    with opener() as other:  # e.g. a second worker
        with pytest.raises(
            KeyBusy, match=f"attempt {first} \\(intent, pid {os.getpid()}\\)"
        ) as info:
            intent(other, key, exclusive=exclusive)
        assert [a.id for a in info.value.attempts] == [first] and info.value.key == key
        journal.record_submitted(first, "t", None)
        with pytest.raises(KeyBusy, match="submitted"):  # re-attach to it, never pay again
            intent(other, key, exclusive=exclusive)
        assert [a.id for a in journal.attempts(key=key)] == [first]  # nothing recorded
        journal.record_failed(first, "InternalError", "boom")
        second = intent(other, key, exclusive=exclusive)  # finished: the key is free
    assert second > first


def test_a_dead_owners_intent_still_holds_the_key(journal: Any) -> None:
    """Its submit may have been billed: the task list must be asked (recovery takes it over)
    before anyone claims the key again. The index does not know about pids."""
    key = k("a")
    crashed = intent(journal, key)
    raw(journal, f"UPDATE attempts SET owner_pid = {dead_pid()} WHERE id = {crashed}")
    with pytest.raises(KeyBusy):
        intent(journal, key, exclusive=True)


def test_an_expired_live_attempt_gives_the_key_up(journal: Any, clock: Clock) -> None:
    key = k("a")
    old = intent(journal, key)
    journal.record_submitted(old, "t-old", None)
    clock.now += 23 * 3600
    with pytest.raises(KeyBusy):
        intent(journal, key)
    clock.now += 2 * 3600  # the task (24 h) has expired: nothing left to re-attach to
    new = intent(journal, key, exclusive=True)
    gone = journal.get(old)
    assert (gone.state, gone.finished_at) == ("abandoned", clock.now)
    assert "expired" in (gone.error_message or "")
    assert [a.id for a in journal.in_flight(key, max_age_s=30 * 3600)] == [new]


def test_exclusive_is_refused_by_a_done_key_while_its_blobs_are_there(
    journal: Any, blobs: BlobStore
) -> None:
    key = k("b")
    done = finish(journal, blobs, key, b"img-b")
    with pytest.raises(KeyBusy) as info:
        intent(journal, key, exclusive=True)
    assert [a.id for a in info.value.attempts] == [done]
    assert len(journal.attempts(key=key)) == 1  # the insert was rolled back
    forced = intent(journal, key)  # not exclusive (--force): pays again
    journal.record_abandoned(forced, "test")
    blobs.remove(hashlib.sha256(b"img-b").hexdigest())
    intent(journal, key, exclusive=True)


def test_resubmitting_an_abandoned_attempt_respects_the_index(journal: Any) -> None:
    key = k("a")
    old = intent(journal, key)
    journal.record_abandoned(old, "submit timed out")
    new = intent(journal, key)
    with pytest.raises(KeyBusy) as info:  # the task list found the old one's task after all
        journal.record_submitted(old, "found-late", None)
    assert [a.id for a in info.value.attempts] == [new]
    assert journal.get(old).state == "abandoned"


def test_the_claim_race_has_one_winner(opener: Opener) -> None:
    """Eight workers (a connection each) claim the same keys at the same moment: for every
    key exactly one insert succeeds and the others get KeyBusy naming the winner."""
    workers, keys = 8, [k(f"race-{i}") for i in range(15)]
    journals = [opener() for _ in range(workers)]
    wins: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    for key in keys:
        barrier = threading.Barrier(workers)

        def claim(j: Any, key: str = key, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                intent(j, key, exclusive=True)
                outcome = wins
            except KeyBusy:
                outcome = busy
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                outcome[key] += 1

        threads = [threading.Thread(target=claim, args=(j,)) for j in journals]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for j in journals:
        j.close()
    assert errors == []
    assert wins == Counter({key: 1 for key in keys})
    assert busy == Counter({key: workers - 1 for key in keys})


# -- lookups ---------------------------------------------------------------------------------


def test_lookup_done(journal: Any, blobs: BlobStore, clock: Clock) -> None:
    key = k("a")
    assert journal.lookup_done(key) is None
    pending = intent(journal, key)  # unfinished attempts are no hit
    assert journal.lookup_done(key) is None
    journal.record_abandoned(pending, "test")
    old = finish(journal, blobs, key, b"old")
    clock.now += 5
    new = finish(journal, blobs, key, b"new")
    hit = journal.lookup_done(key)
    assert hit is not None and hit.attempt.id == new
    assert hit.sha256s == (hashlib.sha256(b"new").hexdigest(),)
    assert hit.results[0].width == 1024
    blobs.remove(hashlib.sha256(b"new").hexdigest())  # vanished: fall back to the older one
    hit = journal.lookup_done(key)
    assert hit is not None and hit.attempt.id == old
    path = blobs.path(hashlib.sha256(b"old").hexdigest())
    path.chmod(0o644)
    path.write_bytes(b"ol")  # truncated: no hit either
    assert journal.lookup_done(key) is None
    assert journal.lookup_done(k("other")) is None


def test_in_flight_and_unfinished(journal: Any, blobs: BlobStore, clock: Clock) -> None:
    stale, young, dangling, finished = k("stale"), k("young"), k("dangling"), k("finished")
    s = intent(journal, stale)
    journal.record_submitted(s, "t-stale", None)
    clock.now += 20 * 3600
    y = intent(journal, young)  # intent at 20 h; submitted at 23 h
    clock.now += 3 * 3600
    journal.record_submitted(y, "t-young", None)
    d = intent(journal, dangling)
    finish(journal, blobs, finished)
    journal.record_failed(intent(journal, finished), "E", "m")
    clock.now += 2 * 3600  # stale was submitted 25 h ago, young 2 h ago
    assert [(a.id, a.state, a.dangling) for a in journal.in_flight(young)] == [
        (y, "submitted", False)
    ]
    assert [(a.id, a.dangling) for a in journal.in_flight(dangling)] == [(d, True)]
    assert journal.in_flight(stale) == [] and journal.in_flight(finished) == []
    assert [a.id for a in journal.in_flight(stale, max_age_s=30 * 3600)] == [s]
    assert journal.in_flight(young, max_age_s=3600) == []
    assert [a.id for a in journal.unfinished()] == [s, y, d]


def test_attempts_filters(journal: Any, blobs: BlobStore) -> None:
    a = intent(journal, k("a"), step="one")
    b = finish(journal, blobs, k("b"))
    journal.record_failed(a, "E", "m")
    c = intent(journal, k("a"), step="two")
    assert [x.id for x in journal.attempts()] == [a, b, c]
    assert [x.id for x in journal.attempts(step="one")] == [a]
    assert [x.id for x in journal.attempts(key=k("a"))] == [a, c]
    assert [x.id for x in journal.attempts(key=k("a"), step="two")] == [c]
    assert [x.id for x in journal.attempts(state="done")] == [b]
    assert journal.attempts(state="done")[0].results != ()
    assert [
        x.id for x in journal.attempts("two", k("a"), state="intent", recipe="recipes/r.yaml")
    ] == [c]
    assert journal.attempts(recipe="other.yaml") == []


def test_cache_status(journal: Any, blobs: BlobStore, clock: Clock) -> None:
    cached, reattach, dangling, miss, expired = (k(n) for n in "abcde")
    journal.record_submitted(intent(journal, expired), "t-old", None)
    clock.now += 25 * 3600  # the expired key's task is now out of reach
    finish(journal, blobs, cached)
    forced = intent(journal, cached)  # a cached key stays cached with an attempt in flight
    journal.record_submitted(intent(journal, reattach), "t", None)
    young_intent = intent(journal, dangling)
    journal.record_failed(intent(journal, miss), "E", "m")  # errors are never cached
    got = journal.cache_status([cached, reattach, dangling, miss, expired, cached])
    assert {key: s.status for key, s in got.items()} == {
        cached: "cached", reattach: "reattach", dangling: "dangling", miss: "miss",
        expired: "miss",
    }  # fmt: skip
    assert list(got) == [cached, reattach, dangling, miss, expired]
    assert got[cached].done is not None and got[cached].done.results
    assert [a.id for a in got[cached].in_flight] == [forced]
    assert [a.state for a in got[reattach].in_flight] == ["submitted"]
    assert [a.id for a in got[dangling].in_flight] == [young_intent]
    assert got[miss].in_flight == () and got[miss].done is None
    assert got[expired].in_flight == ()


def test_cache_status_many_keys(journal: Any, blobs: BlobStore) -> None:
    keys = [k(f"p{i}") for i in range(1203)]
    done = set(keys[::100])
    for key in done:
        finish(journal, blobs, key, key.encode())
    got = journal.cache_status(keys)
    assert {key for key, s in got.items() if s.status == "cached"} == done
    assert len(got) == len(keys)


def test_stats(journal: Any, blobs: BlobStore) -> None:
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


# -- maintenance -----------------------------------------------------------------------------


def age(blobs: BlobStore, data: bytes, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(blobs.path(hashlib.sha256(data).hexdigest()), (t, t))


def test_gc(journal: Any, blobs: BlobStore) -> None:
    keep, drop = k("keep"), k("drop")
    kept = finish(journal, blobs, keep, b"kept")
    finish(journal, blobs, drop, b"dropped")
    journal.record_failed(intent(journal, drop), "E", "m")
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
    assert journal.gc([]).attempts_removed == 1  # nothing kept: every finished attempt goes


def test_shared_blob_survives_gc_of_one_referrer(journal: Any, blobs: BlobStore) -> None:
    finish(journal, blobs, k("a"), b"same")
    finish(journal, blobs, k("b"), b"same")
    age(blobs, b"same", 7200)
    assert journal.gc([k("b")]).blobs_removed == 0
    assert journal.lookup_done(k("b")) is not None


def test_clear(journal: Any, blobs: BlobStore) -> None:
    finish(journal, blobs, k("a"), b"a")
    pending = intent(journal, k("b"))
    blobs.put_bytes(b"orphan")
    report = journal.clear()
    assert (report.attempts_removed, report.blobs_removed) == (1, 2)
    assert [a.id for a in journal.attempts()] == [pending]
    assert journal.clear(include_unfinished=True).attempts_removed == 1
    assert journal.attempts() == [] and list(blobs) == []


# -- liveness, orphans, seeds ----------------------------------------------------------------


def test_heartbeats(journal: Any, clock: Clock) -> None:
    aid = intent(journal, k("a"))
    mine = journal.get(aid)
    elsewhere = replace(mine, owner_host="other-host")  # no pid check there: heartbeat only
    assert journal.owner_live(elsewhere) is False  # never heard of
    assert journal.owner_live(mine) is True  # the pid check alone
    journal.heartbeat()
    assert journal.owner_seen(mine.owner_host, mine.owner_pid) == clock.now
    raw(
        journal,
        f"INSERT INTO owners VALUES ('other-host', {mine.owner_pid}, {clock.now}, {clock.now})",
    )
    assert journal.owner_live(elsewhere) is True
    clock.now += journal.heartbeat_ttl_s + 1
    assert journal.owner_live(elsewhere) is False  # gone quiet: taken for dead
    assert journal.owner_live(mine) is False  # a stale heartbeat overrules a live pid (hung)
    journal.heartbeat()
    assert journal.owner_live(mine) is True
    journal.sign_off()
    assert journal.owner_seen(mine.owner_host, mine.owner_pid) is None
    assert journal.owner_live(mine) is True


def test_the_ttl_is_configurable(opener: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    with opener(heartbeat_ttl_s=3.0) as j:
        assert (j.heartbeat_ttl_s, j.heartbeat_interval_s) == (3.0, 0.5)
    monkeypatch.setenv("WANRECIPE_HEARTBEAT_TTL", "2m")
    with opener() as j:
        assert j.heartbeat_ttl_s == 120.0
    monkeypatch.setenv("WANRECIPE_HEARTBEAT_TTL", "soon")
    with pytest.raises(ValueError, match="WANRECIPE_HEARTBEAT_TTL='soon'"):
        opener()


def test_an_orphan_is_taken_over_by_exactly_one_worker(
    journal: Any, opener: Opener, clock: Clock
) -> None:
    aid = intent(journal, k("a"))
    journal.record_submitted(aid, "t-1", None)
    raw(journal, f"UPDATE attempts SET owner_host = 'lost-host' WHERE id = {aid}")
    raw(
        journal, f"INSERT INTO owners VALUES ('lost-host', {os.getpid()}, {clock.now}, {clock.now})"
    )
    orphan = journal.get(aid)
    assert journal.take_over(orphan) is None  # its heartbeat is fresh: not an orphan yet
    clock.now += journal.heartbeat_ttl_s + 1
    assert journal.owner_live(orphan) is False
    outcomes: list[Attempt | None] = []
    takers = [opener() for _ in range(6)]
    barrier = threading.Barrier(len(takers))

    def take(j: Any) -> None:
        barrier.wait()
        outcomes.append(j.take_over(orphan))

    threads = [threading.Thread(target=take, args=(j,)) for j in takers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for j in takers:
        j.close()
    won = [a for a in outcomes if a is not None]
    assert len(outcomes) == 6 and len(won) == 1
    assert (won[0].owner_pid, won[0].state, won[0].task_id) == (os.getpid(), "submitted", "t-1")
    assert won[0].owner_host != "lost-host" and journal.get(aid) == won[0]
    assert journal.take_over(orphan) is None  # changed hands already


def test_a_dead_pid_is_an_orphan_at_once(journal: Any) -> None:
    aid = intent(journal, k("a"))
    raw(journal, f"UPDATE attempts SET owner_pid = {dead_pid()} WHERE id = {aid}")
    orphan = journal.get(aid)
    journal.heartbeat()  # even with a fresh heartbeat row of some pid
    taken = journal.take_over(orphan)
    assert taken is not None and taken.owner_pid == os.getpid() and taken.state == "intent"
    journal.record_abandoned(aid, "done with it")
    assert journal.take_over(taken) is None  # finished: nothing to take over


def test_the_first_claimed_seed_wins(journal: Any, opener: Opener) -> None:
    with opener() as two:
        assert journal.claim_seed(recipe="r", step="a", identity="i", seed=11) == 11
        assert two.claim_seed(recipe="r", step="a", identity="i", seed=22) == 11
        assert two.claim_seed(recipe="r", step="a", identity="j", seed=22) == 22


# -- threads ---------------------------------------------------------------------------------


def test_threads_share_one_journal(journal: Any, blobs: BlobStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(15):
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
    assert journal.stats().attempts_by_state == {"done": 90}


async def test_asyncio_to_thread(journal: Any, blobs: BlobStore) -> None:
    async def task(i: int) -> None:
        key = k(f"async-{i}")
        aid = await asyncio.to_thread(intent, journal, key)
        await asyncio.to_thread(journal.record_submitted, aid, f"t{i}", None)
        res = await asyncio.to_thread(result, blobs, f"a{i}".encode())
        journal.record_done(aid, [res], 1)

    await asyncio.gather(*(task(i) for i in range(20)))
    assert len(journal.attempts(state="done")) == 20


# -- Postgres only -----------------------------------------------------------------------------


def test_postgres_keeps_time_on_the_databases_clock(
    pg_url: str, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No clock given: every time the journal records is the server's, not this process's
    (which is made absurd here: the year 1970)."""
    with PostgresJournal(pg_url, blobs) as j:
        monkeypatch.setattr(time, "time", lambda: 1000.0)
        aid = intent(j, k("a"))
        j.heartbeat()
        created = j.get(aid).created_at
        seen = j.owner_seen(j._host, os.getpid())
        with j._db.conn.transaction():
            now = j._db.conn.execute("SELECT extract(epoch FROM now())::float8 AS t").fetchone()
    assert seen is not None and 1_600_000_000 < created <= seen <= now["t"]


def test_postgres_reconnects_after_the_server_dropped_it(pg_url: str, blobs: BlobStore) -> None:
    with PostgresJournal(pg_url, blobs) as j, PostgresJournal(pg_url, blobs) as admin:
        aid = intent(j, k("a"))
        pid = j._db.conn.info.backend_pid
        with admin._db.conn.transaction():
            admin._db.conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # waits
        with pytest.raises(StoreError):  # the transaction the drop broke fails, and says so
            j.get(aid)
        assert j.get(aid).state == "intent"  # the next one has a new connection
    with pytest.raises(StoreError, match="closed"):
        j.get(aid)


CLAIMER = """
import os, sys, time
from pathlib import Path
from wanrecipe.store import BlobStore, Journal, KeyBusy
from wanrecipe.store.pg_journal import PostgresJournal
where, go, keys = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
blobs = BlobStore(Path(go).parent / "objects")
j = PostgresJournal(where, blobs) if "://" in where else Journal(Path(where), blobs)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
for key in keys:
    try:
        j.record_intent(key, step="s", recipe="r", backend="b", request={}, seed=1, exclusive=True)
        print("won", key, flush=True)
    except KeyBusy:
        print("busy", key, flush=True)
j.close()
"""


def test_the_claim_race_across_processes(journal: Any, tmp_path: Path) -> None:
    """Four processes, released at once, claim the same 20 keys: each key has one winner."""
    where = str(tmp_path / "state.db") if journal.dialect == "sqlite" else journal.location
    keys = [k(f"proc-{i}") for i in range(20)]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, where, str(go), *keys],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    lines = [line.split() for out, _ in outs for line in out.splitlines()]
    assert Counter(key for what, key in lines if what == "won") == Counter(keys)
    assert Counter(key for what, key in lines if what == "busy") == Counter(
        {key: 3 for key in keys}
    )
    assert {a.key for a in journal.attempts()} == set(keys) and len(journal.attempts()) == 20


def test_postgres_waits_are_bounded(pg_url: str, blobs: BlobStore) -> None:
    with PostgresJournal(pg_url, blobs) as j, j._db.conn.transaction():
        got = j._db.conn.execute(
            "SELECT current_setting('lock_timeout') AS lock,"
            " current_setting('idle_in_transaction_session_timeout') AS idle"
        ).fetchone()
    assert (got["lock"], got["idle"]) == ("30s", "1min")


def test_a_quick_intent_is_written_at_once_or_refused_with_nothing_written(journal: Any) -> None:
    """``quick=True`` never waits: a local journal nobody else is writing takes it at once;
    one a round trip away refuses it (the caller writes it from a thread)."""
    if journal._db.local:
        assert journal.get(intent(journal, k("quick"), quick=True)).state == "intent"
    else:
        with pytest.raises(WouldWait):
            intent(journal, k("quick"), quick=True)
        assert journal.unfinished() == []
    assert journal.get(intent(journal, k("slow"))).state == "intent"


def test_quick_submitted_and_done_marks_are_made_at_once_or_refused_with_nothing_written(
    journal: Any, blobs: BlobStore
) -> None:
    """The two marks the runner makes on the event loop: like the intent, ``quick=True``
    writes at once where the journal is local, and where it is a round trip away refuses,
    leaving the attempt as it was (the caller writes it from a thread)."""
    aid = intent(journal, k("marks"))
    res = [result(blobs, b"quick marks")]
    if journal._db.local:
        journal.record_submitted(aid, "task-q", "req-q", quick=True)
        assert journal.get(aid).state == "submitted"
        journal.record_done(aid, res, 1, quick=True)
        assert journal.get(aid).state == "done"
        return
    with pytest.raises(WouldWait):
        journal.record_submitted(aid, "task-q", "req-q", quick=True)
    assert journal.get(aid).state == "intent" and journal.get(aid).task_id is None
    journal.record_submitted(aid, "task-q", "req-q")
    with pytest.raises(WouldWait):
        journal.record_done(aid, res, 1, quick=True)
    assert journal.get(aid).state == "submitted" and journal.lookup_done(k("marks")) is None
    journal.record_done(aid, res, 1)
    assert journal.get(aid).state == "done"
