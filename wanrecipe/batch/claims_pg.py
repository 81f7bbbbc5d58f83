"""PostgresClaims: the rows of a batch in ``batch_rows``, claimed with FOR UPDATE SKIP LOCKED.

Times are the database's (``clock_timestamp()``), never a machine's. psycopg (the ``team``
extra) is imported only here, only for a ``postgresql://`` state.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import StoreError
from .claims import ROW_TTL_S

T = TypeVar("T")
#: The channel on which a finished or released row is announced (payload: the batch id).
CHANNEL = "wanrecipe_rows"
NOW = "extract(epoch FROM clock_timestamp())"

SQL: dict[str, str] = {
    "schema": """
        CREATE TABLE IF NOT EXISTS batch_rows (
            batch text NOT NULL,
            row_key text NOT NULL,
            position integer NOT NULL,
            status text NOT NULL DEFAULT 'todo'
                CHECK (status IN ('todo', 'claimed', 'done', 'failed')),
            owner text,
            heartbeat double precision,
            claims integer NOT NULL DEFAULT 0,
            PRIMARY KEY (batch, row_key)
        );
        CREATE INDEX IF NOT EXISTS batch_rows_todo ON batch_rows (batch, status, position)
    """,
    "schema_lock": "SELECT pg_advisory_xact_lock(%s)",
    "register": (
        "INSERT INTO batch_rows (batch, row_key, position) VALUES (%s, %s, %s)"
        " ON CONFLICT (batch, row_key) DO NOTHING"
    ),
    # A process starting on the batch tries its failed rows again, as a re-run would.
    "retry_failed": (
        "UPDATE batch_rows SET status = 'todo', owner = NULL WHERE batch = %s AND status = 'failed'"
    ),
    "claim": f"""
        UPDATE batch_rows AS r
           SET status = 'claimed', owner = %(owner)s, heartbeat = {NOW}, claims = r.claims + 1
          FROM (SELECT batch, row_key FROM batch_rows
                 WHERE batch = %(batch)s
                   AND (status = 'todo'
                        OR (status = 'claimed'
                            AND (heartbeat < {NOW} - %(ttl)s OR owner = %(owner)s)))
                 ORDER BY position
                 LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED) AS free
         WHERE r.batch = free.batch AND r.row_key = free.row_key
     RETURNING r.row_key, r.position
    """,
    "heartbeat": (
        f"UPDATE batch_rows SET heartbeat = {NOW}"
        " WHERE batch = %s AND owner = %s AND status = 'claimed'"
    ),
    "finish": (
        "UPDATE batch_rows SET status = %s, owner = CASE WHEN %s = 'todo' THEN NULL ELSE owner END"
        " WHERE batch = %s AND row_key = %s AND owner = %s AND status = 'claimed'"
    ),
    "others": (
        "SELECT row_key, status, owner FROM batch_rows"
        " WHERE batch = %s AND owner IS DISTINCT FROM %s"
    ),
    "held_elsewhere": (
        "SELECT count(*) FROM batch_rows"
        " WHERE batch = %s AND status = 'claimed' AND owner IS DISTINCT FROM %s"
    ),
    "release_mine": (
        "UPDATE batch_rows SET status = 'todo', owner = NULL"
        " WHERE batch = %s AND owner = %s AND status = 'claimed'"
    ),
    # A row that ends or comes free wakes the processes waiting for the batch to end.
    "notify": "SELECT pg_notify(%s, %s)",
    "listen": f"LISTEN {CHANNEL}",
}

#: A row's record status -> its status in the table ("todo": free for anyone again).
_FINISHED = {"ok": "done", "skipped": "done", "failed": "failed"}


def _schema_key() -> int:
    return int.from_bytes(hashlib.sha256(b"wanrecipe.batch_rows").digest()[:8], "big", signed=True)


class PostgresClaims:
    """The rows of one batch, shared by every process (on any machine) that runs it."""

    shared = True

    def __init__(self, url: str, *, ttl_s: float = ROW_TTL_S) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self.ttl_s = ttl_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.batch = ""
        self._lock = threading.Lock()
        self._db: Any = psycopg.connect(url, autocommit=True)
        self._listener: Any = None
        with self._db.transaction():
            self._db.execute(SQL["schema_lock"], (_schema_key(),))
            self._db.execute(SQL["schema"])

    def _run(self, work: Callable[[Any], T]) -> T:
        """``work(connection)`` in one transaction. A dropped connection is opened again and
        the work done once more: every statement here may be repeated (a claim whose answer
        was lost is claimed again, see ``claim``). Raises StoreError when the database stays
        unreachable."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._db.closed or self._db.broken:
                        self._db = self._psycopg.connect(self._url, autocommit=True)
                    with self._db.transaction():
                        return work(self._db)
                except self._psycopg.OperationalError as exc:
                    if attempt == 2:
                        raise StoreError(
                            f"the batch's rows table cannot be reached: {exc}"
                        ) from exc
        raise AssertionError("unreachable")

    def register(self, batch: str, rows: Sequence[str]) -> None:
        self.batch = batch
        if self._listener is None:
            with contextlib.suppress(self._psycopg.Error):
                self._listener = self._psycopg.connect(self._url, autocommit=True)
                self._listener.execute(SQL["listen"])

        def work(db: Any) -> None:
            with db.cursor() as cur:
                cur.executemany(SQL["register"], [(batch, k, i) for i, k in enumerate(rows)])
            db.execute(SQL["retry_failed"], (batch,))

        self._run(work)

    def claim(self, limit: int) -> list[str]:
        """Up to ``limit`` free rows (never run, released, or their owner silent for
        ``ttl_s``), in the batch's order; none that another process holds or has done.
        Called between chunks only, so a row already claimed by this process is one whose
        claim's answer was lost: it is returned again."""
        self._drain()  # what changed before this look is seen by it
        params = {"owner": self.owner, "batch": self.batch, "ttl": self.ttl_s, "limit": limit}
        got = self._run(lambda db: db.execute(SQL["claim"], params).fetchall())
        return [key for key, _ in sorted(got, key=lambda r: r[1])]

    def heartbeat(self) -> None:
        # A lost beat is retried by the next; rows are free only after ttl_s without one.
        with contextlib.suppress(StoreError):
            self._run(lambda db: db.execute(SQL["heartbeat"], (self.batch, self.owner)))

    def finish(self, key: str, status: str) -> None:
        to = _FINISHED.get(status, "todo")

        def work(db: Any) -> None:
            db.execute(SQL["finish"], (to, to, self.batch, key, self.owner))
            db.execute(SQL["notify"], (CHANNEL, self.batch))

        self._run(work)

    def _drain(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(self._psycopg.Error):
                for _ in self._listener.notifies(timeout=0):
                    pass

    def wait_change(self, timeout: float) -> None:
        """Return when a row of the batch ends or comes free elsewhere (a ``NOTIFY`` on the
        batch's channel), or after ``timeout`` seconds: an idle process sees the batch end at
        once rather than on its next look. Listening starts with :meth:`register`, so a row
        that ended between the last look and this wait still wakes it."""
        listener = self._listener
        if listener is None:
            time.sleep(timeout)
            return
        try:
            for note in listener.notifies(timeout=timeout):
                if note.payload == self.batch:
                    return
        except self._psycopg.Error:
            # A broken listener: fall back to looking every ``timeout`` seconds.
            with contextlib.suppress(self._psycopg.Error):
                listener.close()
            self._listener = None
            time.sleep(timeout)

    def held_elsewhere(self) -> int:
        """Rows other processes hold (done when it is 0 and nothing is free)."""
        query = SQL["held_elsewhere"]
        return int(self._run(lambda db: db.execute(query, (self.batch, self.owner)).fetchone()[0]))

    def others(self) -> dict[str, str]:
        """Rows this process does not hold: ``{key: "done by host:pid:id"}`` and the like."""
        rows = self._run(lambda db: db.execute(SQL["others"], (self.batch, self.owner)).fetchall())
        return {
            key: status if owner is None else f"{status} by {owner}" for key, status, owner in rows
        }

    def close(self) -> None:
        """Give back the rows still claimed (a clean stop frees them at once)."""
        try:
            if self.batch:
                with contextlib.suppress(StoreError):

                    def work(db: Any) -> None:
                        db.execute(SQL["release_mine"], (self.batch, self.owner))
                        db.execute(SQL["notify"], (CHANNEL, self.batch))

                    self._run(work)
        finally:
            with self._lock:
                self._db.close()
                if self._listener is not None:
                    with contextlib.suppress(self._psycopg.Error):
                        self._listener.close()
                    self._listener = None
