"""The journal on SQLite (``state.db`` in the state directory): the default, one machine.

The operations and their rules are ``policy.py`` (shared with Postgres, ``pg_journal.py``);
this module opens the file, migrates it, and runs ``sql/sqlite.sql``'s named queries.

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
  by default) instead of failing with "database is locked" on a read-to-write upgrade. That
  lock also serialises every claim and every orphan take-over.
- ``record_done`` refuses results whose blob is not in the store with its size: the caller stores
  blobs first, so a done row never points at a missing or truncated image.
- The schema version lives in ``PRAGMA user_version``; a newer database than this code knows is
  refused rather than misread. v3 added the partial unique index ``attempts_one_live``; a
  journal of an older wanrecipe holding two live attempts of one key keeps one of them (a
  submitted one first, then the newest) and the others are abandoned with the reason.

Thread safety: one connection per ``Journal`` (``check_same_thread=False``) guarded by a lock
held for the whole of every public method, so it may be called from ``asyncio.to_thread`` workers
(preferred for writes: a commit is about 4 ms, mostly its fsync) or from the event loop directly
(reads take well under a millisecond). Do not share a
``Journal`` across ``fork``; open a new one in the child. Several processes may open the same file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, cast

from ..errors import StoreError
from .blobs_api import Blobs
from .dialect import Row, queries, statements
from .liveness import heartbeat_ttl
from .policy import JournalBase
from .records import (
    DEFAULT_MAX_AGE_S,
    FINISHED,
    UNFINISHED,
    Attempt,
    AttemptState,
    CacheState,
    CacheVerdict,
    DoneEntry,
    GcReport,
    InvalidTransition,
    JournalStats,
    KeyBusy,
    ResultRecord,
    WouldWait,
    worker_host,
)
from .sqlite_retry import begin_now, enter_wal

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "FINISHED",
    "SCHEMA_VERSION",
    "UNFINISHED",
    "Attempt",
    "AttemptState",
    "CacheState",
    "CacheVerdict",
    "DoneEntry",
    "GcReport",
    "InvalidTransition",
    "Journal",
    "JournalStats",
    "KeyBusy",
    "ResultRecord",
]

#: v1 attempts + results; v2 owners (heartbeats) + seeds; v3 one live attempt per key.
SCHEMA_VERSION: Final = 3


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection, sql: dict[str, str], clock: Callable[[], float]):
        self._conn = conn
        self._sql = sql
        self._clock = clock
        self._now: float | None = None

    def _execute(self, name: str, params: dict[str, Any]) -> sqlite3.Cursor:
        values = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
        return self._conn.execute(self._sql[name], values)

    def one(self, name: str, **params: Any) -> Row | None:
        return cast(Row | None, self._execute(name, params).fetchone())

    def all(self, name: str, **params: Any) -> list[Row]:
        return cast(list[Row], self._execute(name, params).fetchall())

    def run(self, name: str, **params: Any) -> int:
        return self._execute(name, params).rowcount

    def claim(self, name: str, **params: Any) -> Row | None:
        try:
            cur = self._execute(name, params)
            return cast(Row | None, cur.fetchone())
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            return None  # only this statement is undone; the transaction goes on

    def now(self) -> float:
        if self._now is None:
            self._now = self._clock()
        return self._now

    def lock_key(self, key: str) -> None:
        """A write transaction (BEGIN IMMEDIATE) holds the one write lock already."""


class _Sqlite:
    """The SQLite dialect: a connection for writes (WAL, an fsync per durable commit) and one
    for reads, which in WAL mode never waits for a writer (not even for this process's own
    commit and its fsync): reads may be made from the event loop."""

    name = "sqlite"
    local = True

    def __init__(self, path: Path, busy_timeout_s: float, clock: Callable[[], float]) -> None:
        self.path = path
        self.location = str(path)
        self._clock = clock
        self._sql = queries("sqlite")
        self._lock = threading.RLock()
        self._read_lock = threading.RLock()
        self._reader: sqlite3.Connection | None = None
        self._busy_timeout_s = busy_timeout_s
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing commits implicitly.
        try:
            self.conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from exc
        try:
            with self.translated():
                self.conn.row_factory = sqlite3.Row
                self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                mode = enter_wal(self.conn, within_s=busy_timeout_s)
                if str(mode).lower() != "wal":
                    raise StoreError(f"{path}: cannot use WAL mode (got {mode!r})")
                self.conn.execute("PRAGMA synchronous = FULL")
                self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _migrate(self) -> None:
        with self._lock, self.translated():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return  # the common case needs no write lock, so opening never waits on a writer
        with self.write() as tx:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this wanrecipe "
                    f"understands ({SCHEMA_VERSION}); upgrade wanrecipe or use another state dir"
                )
            for step, block in ((1, "schema_v1"), (2, "schema_v2"), (3, "schema_v3")):
                if version < step:
                    if block == "schema_v3":
                        tx.run("schema_v3_duplicates", now=tx.now())
                    for statement in statements(self._sql[block]):
                        self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def write(self, *, durable: bool = True, quick: bool = False) -> Iterator[_SqliteTx]:
        """One write transaction; ``durable=False`` commits without the WAL fsync (see the
        module docstring for which commits may). ``quick=True`` (for the event loop): when
        another thread or process is writing, raise ``WouldWait`` at once, nothing written,
        instead of waiting out the busy timeout."""
        with self._held(quick), self.translated():
            if not durable:
                self.conn.execute("PRAGMA synchronous = NORMAL")
            try:
                if quick:
                    self._begin_now()
                else:
                    self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTx(self.conn, self._sql, self._clock)
                    self.conn.execute("COMMIT")
                except BaseException:
                    # Some errors (disk full, I/O) have rolled back already; do not mask them.
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    self.conn.execute("PRAGMA synchronous = FULL")

    @contextmanager
    def _held(self, quick: bool) -> Iterator[None]:
        """The write connection's lock; ``quick``: ``WouldWait`` rather than wait for it."""
        if not self._lock.acquire(blocking=not quick):
            raise WouldWait(self.location)
        try:
            yield
        finally:
            self._lock.release()

    def _begin_now(self) -> None:
        """BEGIN IMMEDIATE without waiting: busy -> ``WouldWait``."""
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            begin_now(self.conn, lambda: WouldWait(self.location))
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")

    @contextmanager
    def read(self) -> Iterator[_SqliteTx]:
        # One deferred transaction = one consistent snapshot across the statements inside.
        with self._read_lock, self.translated():
            conn = self._reader_conn()
            conn.execute("BEGIN")
            try:
                yield _SqliteTx(conn, self._sql, self._clock)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            self._reader = conn
        return self._reader

    @contextmanager
    def translated(self) -> Iterator[None]:
        """The one boundary where sqlite3 errors become StoreError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc


class Journal(JournalBase):
    """The attempts database on SQLite (``state.db``). See the module docstring."""

    def __init__(
        self,
        path: Path,
        blobs: Blobs,
        *,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        heartbeat_ttl_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        ttl = heartbeat_ttl(heartbeat_ttl_s)
        super().__init__(
            _Sqlite(self.path, busy_timeout_s, clock), blobs, host=worker_host(),
            heartbeat_ttl_s=ttl,
        )  # fmt: skip

    @property
    def _conn(self) -> sqlite3.Connection:
        return cast(_Sqlite, self._db).conn

    def __enter__(self) -> Journal:
        return self
