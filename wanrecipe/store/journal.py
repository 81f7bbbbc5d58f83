"""The journal: one SQLite row per task attempt, the memory behind "never pay twice".

Protocol (the executor's side): ``record_intent`` before submitting, ``record_submitted`` the
moment the submit returns a task id, store the result blobs, then ``record_done``. A row left in
``intent`` (no task id) after a crash means "may have been billed"; a ``submitted`` row younger
than 24 h can be re-attached instead of submitted again.

Durability choices:

- WAL mode: readers never block the writer and a crash mid-transaction leaves the last committed
  state; the WAL is replayed on the next open.
- One fsync per task, for the intent: ``record_intent`` commits with ``synchronous=FULL`` (it
  fsyncs the WAL), because a lost intent is exactly the double bill this module exists to
  prevent. The later commits of a task (task id, done, failed, abandoned) use ``NORMAL``: they
  survive ``kill -9`` (committed pages are in the OS cache) and the next intent's fsync makes
  them durable; on a power loss before that, what they said is recovered from what stays: a
  lost task id leaves the intent, which the task list reconciles; a lost done mark leaves the
  task id, and the re-run re-attaches and finds the blob (stored and fsynced before the mark).
  See docs/state.md ("Why each fsync").
- Writes use ``BEGIN IMMEDIATE`` so a second process waits for the write lock (busy timeout, 30 s
  by default) instead of failing with "database is locked" on a read-to-write upgrade.
- ``record_done`` refuses results whose blob is not in the store with its size: the caller stores
  blobs first, so a done row never points at a missing or truncated image.
- The schema version lives in ``PRAGMA user_version``; a newer database than this code knows is
  refused rather than misread.

Thread safety: one connection per ``Journal`` (``check_same_thread=False``) guarded by a lock
held for the whole of every public method, so it may be called from ``asyncio.to_thread`` workers
(preferred for writes: a commit is about 4 ms, mostly its fsync) or from the event loop directly
(reads take well under a millisecond). Do not share a
``Journal`` across ``fork``; open a new one in the child. Several processes may open the same file.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from ..errors import StoreError
from .blobs_api import Blobs
from .liveness import _SCHEMA_V2, Liveness

AttemptState = Literal["intent", "submitted", "done", "failed", "abandoned"]
CacheVerdict = Literal["cached", "reattach", "dangling", "miss"]

SCHEMA_VERSION: Final = 2
_HEX64 = re.compile(r"[0-9a-f]{64}")
DEFAULT_MAX_AGE_S: Final = 24 * 3600.0
UNFINISHED: Final = ("intent", "submitted")
FINISHED: Final = ("done", "failed", "abandoned")

# Which states each transition may start from. done -> done is handled as a no-op (two runs that
# re-attached to the same task both finish it); abandoned -> submitted/done/failed lets a later
# reconciliation record what became of a task we had given up on.
_FROM: Final[dict[str, tuple[str, ...]]] = {
    "submitted": ("intent", "abandoned"),
    "done": ("submitted", "abandoned"),
    "failed": ("intent", "submitted", "abandoned"),
    "abandoned": ("intent", "submitted"),
}

_SCHEMA_V1: Final = """
CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT NOT NULL,
    step          TEXT NOT NULL,
    recipe        TEXT NOT NULL,
    backend       TEXT NOT NULL,
    request_json  TEXT NOT NULL,
    seed          INTEGER NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('intent', 'submitted', 'done', 'failed', 'abandoned')),
    task_id       TEXT,
    request_id    TEXT,
    created_at    REAL NOT NULL,
    submitted_at  REAL,
    finished_at   REAL,
    usage_images  INTEGER,
    error_code    TEXT,
    error_message TEXT,
    owner_host    TEXT NOT NULL,
    owner_pid     INTEGER NOT NULL
);
CREATE INDEX attempts_by_key ON attempts (key, state);
CREATE INDEX attempts_by_step ON attempts (step);
CREATE INDEX attempts_unfinished ON attempts (state) WHERE state IN ('intent', 'submitted');
CREATE TABLE results (
    attempt_id   INTEGER NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    url_redacted TEXT,
    PRIMARY KEY (attempt_id, idx)
) WITHOUT ROWID;
CREATE INDEX results_by_sha ON results (sha256);
"""


class InvalidTransition(StoreError):
    """An attempt was asked to move to a state its current state does not allow."""


class KeyBusy(StoreError):
    """``record_intent(exclusive=True)`` found the key done or in flight in a live process.

    ``attempts`` are the blockers: look the key up again (``lookup_done``, ``in_flight``) and
    reuse or re-attach instead of submitting.
    """

    def __init__(self, key: str, attempts: tuple[Attempt, ...]) -> None:
        self.key = key
        self.attempts = attempts
        what = ", ".join(f"attempt {a.id} ({a.state}, pid {a.owner_pid})" for a in attempts)
        super().__init__(f"key {key[:12]} is already taken: {what}")


@dataclass(frozen=True)
class ResultRecord:
    """One output image of a done attempt; its bytes are the blob ``sha256``."""

    index: int
    sha256: str
    size: int
    width: int | None = None
    height: int | None = None
    url_redacted: str | None = None


@dataclass(frozen=True)
class Attempt:
    id: int
    key: str
    step: str
    recipe: str
    backend: str
    request: dict[str, Any]
    seed: int
    state: AttemptState
    task_id: str | None
    request_id: str | None
    created_at: float
    submitted_at: float | None
    finished_at: float | None
    usage_images: int | None
    error_code: str | None
    error_message: str | None
    owner_host: str
    owner_pid: int
    results: tuple[ResultRecord, ...] = ()

    @property
    def dangling(self) -> bool:
        """Intent recorded but no task id: the submit may or may not have reached the service."""
        return self.state == "intent"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def owner_alive(self) -> bool | None:
        """Whether the process that recorded this attempt still runs; None when unknowable.

        A pid can be reused, so True means "maybe"; False is reliable on the same host.
        """
        if self.owner_host != socket.gethostname():
            return None
        if self.owner_pid == os.getpid():
            return True
        try:
            os.kill(self.owner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OSError:
            return None
        return True


@dataclass(frozen=True)
class DoneEntry:
    """A cache hit: the done attempt and its results, every blob present in the store."""

    attempt: Attempt

    @property
    def results(self) -> tuple[ResultRecord, ...]:
        return self.attempt.results

    @property
    def sha256s(self) -> tuple[str, ...]:
        return tuple(r.sha256 for r in self.attempt.results)


@dataclass(frozen=True)
class CacheState:
    """What ``plan`` shows for a key: cached, re-attach, dangling (may be billed) or will run."""

    key: str
    status: CacheVerdict
    done: DoneEntry | None = None
    in_flight: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class GcReport:
    attempts_removed: int
    blobs_removed: int
    bytes_freed: int


@dataclass(frozen=True)
class JournalStats:
    attempts_by_state: dict[str, int]
    keys_cached: int
    blobs: int
    blob_bytes: int


class Journal(Liveness):
    """The attempts database (``state.db``). See the module docstring for the guarantees."""

    def __init__(
        self,
        path: Path,
        blobs: Blobs,
        *,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.blobs = blobs
        self._clock = clock
        self._lock = threading.RLock()
        self._host = socket.gethostname()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing commits implicitly.
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        try:
            with self._translated():
                self._configure(busy_timeout_s)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _configure(self, busy_timeout_s: float) -> None:
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot use WAL mode (got {mode!r})")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._lock, self._translated():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return  # the common case needs no write lock, so opening never waits on a writer
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this wanrecipe "
                    f"understands ({SCHEMA_VERSION}); upgrade wanrecipe or use another state dir"
                )
            if version < 1:
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version < 2:
                for statement in _SCHEMA_V2.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable=False`` commits without the WAL fsync (see the
        module docstring for which commits may)."""
        with self._lock, self._translated():
            if not durable:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    # Some errors (disk full, I/O) have rolled back already; do not mask them.
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous = FULL")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One deferred transaction = one consistent snapshot across the statements inside.
        with self._lock, self._translated():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """The one boundary where sqlite3 errors become StoreError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    # -- the protocol -------------------------------------------------------------------------

    def record_intent(
        self,
        key: str,
        *,
        step: str,
        recipe: str,
        backend: str,
        request: dict[str, Any],
        seed: int,
        exclusive: bool = False,
    ) -> int:
        """Record that we are about to submit; durable when this returns. Returns the attempt id.

        ``request`` is the already redacted request summary (no keys, no signed URLs).

        ``exclusive=True`` closes the race between two runs that looked the key up at the same
        moment: in the same transaction as the insert, it raises ``KeyBusy`` if the key has a
        done attempt with all its blobs, a submitted attempt younger than 24 h (re-attach to it
        instead), or an intent younger than 24 h whose owner is not known to be dead (this
        process's own included: abandon a dangling intent before trying again).
        """
        if not _HEX64.fullmatch(key):
            raise ValueError(f"not a content key (64 lowercase hex digits): {key!r}")
        request_json = json.dumps(request, sort_keys=True, ensure_ascii=False, allow_nan=False)
        with self._write() as db:
            if exclusive:
                self._check_free(db, key)
            cur = db.execute(
                "INSERT INTO attempts (key, step, recipe, backend, request_json, seed, state,"
                " created_at, owner_host, owner_pid) VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?)",
                (
                    key,
                    step,
                    recipe,
                    backend,
                    request_json,
                    int(seed),
                    self._clock(),
                    self._host,
                    os.getpid(),
                ),
            )
            return cast(int, cur.lastrowid)

    def _check_free(self, db: sqlite3.Connection, key: str) -> None:
        cutoff = self._clock() - DEFAULT_MAX_AGE_S
        rows = db.execute(
            "SELECT * FROM attempts WHERE key = ? AND state IN ('intent', 'submitted', 'done')"
            " ORDER BY id",
            (key,),
        ).fetchall()
        blockers = []
        for a in self._attempts(db, rows):
            if a.state == "done":
                if self._first_complete([a]) is not None:
                    blockers.append(a)
            elif (a.submitted_at or a.created_at) < cutoff:
                continue  # its task has expired: nothing left to re-attach to
            elif a.state == "submitted" or a.owner_alive() is not False:
                blockers.append(a)
        if blockers:
            raise KeyBusy(key, tuple(blockers))

    def record_submitted(self, attempt_id: int, task_id: str, request_id: str | None) -> None:
        """The service accepted the submit: remember the task id at once."""
        if not task_id:
            raise ValueError("a submitted attempt needs the task id the service returned")
        with self._write(durable=False) as db:
            self._transition(
                db,
                attempt_id,
                "submitted",
                "task_id = ?, request_id = ?, submitted_at = ?",
                (task_id, request_id, self._clock()),
            )

    def record_done(
        self, attempt_id: int, results: Sequence[ResultRecord], usage_images: int
    ) -> None:
        """Mark the task SUCCEEDED. Every result's blob must already be in the store.

        Idempotent for an attempt that is already done (its first results are kept).
        """
        if not results:
            raise ValueError("a done attempt needs at least one result; record_failed otherwise")
        if len({r.index for r in results}) != len(results):
            raise ValueError("result indexes must be unique")
        for r in results:
            if not self.blobs.has_complete(r.sha256, r.size):
                raise StoreError(
                    f"result {r.index} of attempt {attempt_id}: blob {r.sha256} is not in the "
                    f"store with {r.size} bytes; store the image before marking it done"
                )
        with self._write(durable=False) as db:
            if self._state(db, attempt_id) == "done":
                return
            self._transition(
                db,
                attempt_id,
                "done",
                "finished_at = ?, usage_images = ?",
                (self._clock(), int(usage_images)),
            )
            db.executemany(
                "INSERT INTO results (attempt_id, idx, sha256, size, width, height, url_redacted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (attempt_id, r.index, r.sha256, r.size, r.width, r.height, r.url_redacted)
                    for r in results
                ],
            )

    def record_failed(self, attempt_id: int, code: str, message: str) -> None:
        with self._write(durable=False) as db:
            self._transition(
                db,
                attempt_id,
                "failed",
                "finished_at = ?, error_code = ?, error_message = ?",
                (self._clock(), code, message),
            )

    def record_abandoned(self, attempt_id: int, reason: str) -> None:
        """We stop waiting for this attempt (expired, budget, gave up reconciling)."""
        with self._write(durable=False) as db:
            self._transition(
                db,
                attempt_id,
                "abandoned",
                "finished_at = ?, error_code = 'abandoned', error_message = ?",
                (self._clock(), reason),
            )

    def _state(self, db: sqlite3.Connection, attempt_id: int) -> str:
        row = db.execute("SELECT state FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise StoreError(f"no attempt {attempt_id} in {self.path}")
        return cast(str, row[0])

    def _transition(
        self,
        db: sqlite3.Connection,
        attempt_id: int,
        new: str,
        assignments: str,
        values: tuple[Any, ...],
    ) -> None:
        allowed = _FROM[new]
        marks = ", ".join("?" * len(allowed))
        cur = db.execute(
            f"UPDATE attempts SET state = ?, {assignments} WHERE id = ? AND state IN ({marks})",
            (new, *values, attempt_id, *allowed),
        )
        if cur.rowcount == 1:
            return
        current = self._state(db, attempt_id)
        raise InvalidTransition(f"attempt {attempt_id} is {current}; it cannot become {new}")

    # -- queries ------------------------------------------------------------------------------

    def get(self, attempt_id: int) -> Attempt:
        with self._read() as db:
            rows = db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchall()
            if not rows:
                raise StoreError(f"no attempt {attempt_id} in {self.path}")
            return self._attempts(db, rows)[0]

    def lookup_done(self, key: str) -> DoneEntry | None:
        """The newest done attempt for ``key`` whose blobs are all in the store, if any."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM attempts WHERE key = ? AND state = 'done'"
                " ORDER BY finished_at DESC, id DESC",
                (key,),
            ).fetchall()
            return self._first_complete(self._attempts(db, rows))

    def in_flight(self, key: str, *, max_age_s: float = DEFAULT_MAX_AGE_S) -> list[Attempt]:
        """Unfinished attempts for ``key`` younger than ``max_age_s``, oldest first.

        ``submitted`` ones (age from the submit) can be re-attached by task id; ``intent`` ones
        (age from the intent) are dangling: the submit may have been billed.
        """
        cutoff = self._clock() - max_age_s
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM attempts WHERE key = ? AND state IN ('intent', 'submitted')"
                " AND COALESCE(submitted_at, created_at) >= ? ORDER BY created_at, id",
                (key, cutoff),
            ).fetchall()
            return self._attempts(db, rows)

    def unfinished(self) -> list[Attempt]:
        """Every intent/submitted attempt of any key and age (for reconciliation and reports)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM attempts WHERE state IN ('intent', 'submitted') ORDER BY id"
            ).fetchall()
            return self._attempts(db, rows)

    def attempts(
        self,
        step: str | None = None,
        key: str | None = None,
        *,
        state: AttemptState | None = None,
        recipe: str | None = None,
    ) -> list[Attempt]:
        """Attempts matching every filter given, oldest first."""
        clauses: list[str] = []
        values: list[Any] = []
        for column, value in (("step", step), ("key", key), ("state", state), ("recipe", recipe)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM attempts{where} ORDER BY id", values).fetchall()
            return self._attempts(db, rows)

    def cache_status(
        self, keys: Iterable[str], *, max_age_s: float = DEFAULT_MAX_AGE_S
    ) -> dict[str, CacheState]:
        """The cache index for ``plan``: one indexed query per 500 keys plus a stat per blob."""
        wanted = list(dict.fromkeys(keys))
        cutoff = self._clock() - max_age_s
        by_key: dict[str, list[Attempt]] = {k: [] for k in wanted}
        with self._read() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT * FROM attempts WHERE key IN ({marks})"
                    " AND state IN ('done', 'intent', 'submitted')"
                    " ORDER BY finished_at DESC, id DESC",
                    chunk,
                ).fetchall()
                for attempt in self._attempts(db, rows):
                    by_key[attempt.key].append(attempt)
        out: dict[str, CacheState] = {}
        for key in wanted:
            attempts = by_key[key]
            done = self._first_complete([a for a in attempts if a.state == "done"])
            live = tuple(
                sorted(
                    (
                        a
                        for a in attempts
                        if a.state in UNFINISHED and (a.submitted_at or a.created_at) >= cutoff
                    ),
                    key=lambda a: a.id,
                )
            )
            if done is not None:
                status: CacheVerdict = "cached"
            elif any(a.state == "submitted" for a in live):
                status = "reattach"
            elif live:
                status = "dangling"
            else:
                status = "miss"
            out[key] = CacheState(key, status, done, live)
        return out

    def stats(self) -> JournalStats:
        with self._read() as db:
            counts = {
                row[0]: row[1]
                for row in db.execute("SELECT state, COUNT(*) FROM attempts GROUP BY state")
            }
            keys_cached = db.execute(
                "SELECT COUNT(DISTINCT key) FROM attempts WHERE state = 'done'"
            ).fetchone()[0]
        blobs = 0
        size = 0
        for digest in self.blobs:
            blob_size = self.blobs.size(digest)
            if blob_size is not None:
                blobs += 1
                size += blob_size
        return JournalStats(counts, keys_cached, blobs, size)

    def _first_complete(self, done: Iterable[Attempt]) -> DoneEntry | None:
        for attempt in done:
            if attempt.results and all(
                self.blobs.has_complete(r.sha256, r.size) for r in attempt.results
            ):
                return DoneEntry(attempt)
        return None

    def _attempts(self, db: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Attempt]:
        ids = [row["id"] for row in rows if row["state"] == "done"]
        results: dict[int, list[ResultRecord]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for r in db.execute(
                f"SELECT * FROM results WHERE attempt_id IN ({marks}) ORDER BY attempt_id, idx",
                chunk,
            ):
                results[r["attempt_id"]].append(
                    ResultRecord(
                        r["idx"],
                        r["sha256"],
                        r["size"],
                        r["width"],
                        r["height"],
                        r["url_redacted"],
                    )
                )
        return [_attempt(row, tuple(results.get(row["id"], ()))) for row in rows]

    # -- maintenance (``wanrecipe cache gc|clear``) -------------------------------------------

    def gc(self, keep_keys: Iterable[str], *, min_blob_age_s: float = 3600.0) -> GcReport:
        """Forget finished attempts whose key is not in ``keep_keys``; delete orphaned blobs.

        Unfinished attempts (intent/submitted) are never deleted: they are the record of what
        may have been billed. Blobs no result refers to go only when older than
        ``min_blob_age_s``, because a concurrent run stores blobs before it records them done.
        """
        keep = list(dict.fromkeys(keep_keys))
        with self._write() as db:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS gc_keep (key TEXT PRIMARY KEY)")
            db.execute("DELETE FROM gc_keep")
            db.executemany("INSERT INTO gc_keep (key) VALUES (?)", ((k,) for k in keep))
            removed = db.execute(
                "DELETE FROM attempts WHERE state IN ('done', 'failed', 'abandoned')"
                " AND key NOT IN (SELECT key FROM gc_keep)"
            ).rowcount
            db.execute("DELETE FROM gc_keep")
        blobs_removed, freed = self._remove_orphans(min_blob_age_s)
        return GcReport(removed, blobs_removed, freed)

    def clear(self, *, include_unfinished: bool = False) -> GcReport:
        """Empty the cache. Unfinished attempts stay unless ``include_unfinished``.

        Meant for when no run is using the state dir: orphaned blobs go whatever their age.
        """
        states = ("intent", "submitted", *FINISHED) if include_unfinished else FINISHED
        marks = ", ".join("?" * len(states))
        with self._write() as db:
            removed = db.execute(f"DELETE FROM attempts WHERE state IN ({marks})", states).rowcount
        blobs_removed, freed = self._remove_orphans(0.0)
        return GcReport(removed, blobs_removed, freed)

    def _remove_orphans(self, min_age_s: float) -> tuple[int, int]:
        with self._read() as db:
            referenced = {row[0] for row in db.execute("SELECT DISTINCT sha256 FROM results")}
        cutoff = time.time() - min_age_s
        count = 0
        freed = 0
        for digest in list(self.blobs):
            if digest in referenced:
                continue
            mtime = self.blobs.mtime(digest)
            if mtime is None or mtime > cutoff:
                continue
            freed += self.blobs.remove(digest)
            count += 1
        self.blobs.clean_tmp(max(min_age_s, 0.0))
        return count, freed


def _attempt(row: sqlite3.Row, results: tuple[ResultRecord, ...]) -> Attempt:
    return Attempt(
        id=row["id"],
        key=row["key"],
        step=row["step"],
        recipe=row["recipe"],
        backend=row["backend"],
        request=json.loads(row["request_json"]),
        seed=row["seed"],
        state=row["state"],
        task_id=row["task_id"],
        request_id=row["request_id"],
        created_at=row["created_at"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        usage_images=row["usage_images"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        owner_host=row["owner_host"],
        owner_pid=row["owner_pid"],
        results=results,
    )
