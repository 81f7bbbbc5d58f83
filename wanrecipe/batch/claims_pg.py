"""PostgresClaims: the rows of a batch in ``batch_rows``, claimed with FOR UPDATE SKIP LOCKED.

Times are the database's (``clock_timestamp()``), never a machine's. psycopg (the ``team``
extra) is imported only here, only for a ``postgresql://`` state.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from .claims import ROW_TTL_S

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
                        OR (status = 'claimed' AND heartbeat < {NOW} - %(ttl)s))
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
        with self._db.transaction():
            self._db.execute(SQL["schema_lock"], (_schema_key(),))
            self._db.execute(SQL["schema"])

    def register(self, batch: str, rows: Sequence[str]) -> None:
        self.batch = batch
        with self._lock, self._db.transaction():
            with self._db.cursor() as cur:
                cur.executemany(SQL["register"], [(batch, k, i) for i, k in enumerate(rows)])
            self._db.execute(SQL["retry_failed"], (batch,))

    def claim(self, limit: int) -> list[str]:
        """Up to ``limit`` free rows (never run, released, or their owner silent for
        ``ttl_s``), in the batch's order; none that another process holds or has done."""
        with self._lock, self._db.transaction():
            got = self._db.execute(
                SQL["claim"],
                {"owner": self.owner, "batch": self.batch, "ttl": self.ttl_s, "limit": limit},
            ).fetchall()
        return [key for key, _ in sorted(got, key=lambda r: r[1])]

    def heartbeat(self) -> None:
        with self._lock:
            try:
                self._db.execute(SQL["heartbeat"], (self.batch, self.owner))
            except self._psycopg.OperationalError:
                # A lost beat is retried by the next; rows are free only after ttl_s of them.
                if self._db.closed:
                    self._db = self._psycopg.connect(self._url, autocommit=True)

    def finish(self, key: str, status: str) -> None:
        to = _FINISHED.get(status, "todo")
        with self._lock:
            self._db.execute(SQL["finish"], (to, to, self.batch, key, self.owner))

    def held_elsewhere(self) -> int:
        """Rows other processes hold (done when it is 0 and nothing is free)."""
        with self._lock:
            return int(
                self._db.execute(SQL["held_elsewhere"], (self.batch, self.owner)).fetchone()[0]
            )

    def others(self) -> dict[str, str]:
        """Rows this process does not hold: ``{key: "done by host:pid:id"}`` and the like."""
        with self._lock:
            rows = self._db.execute(SQL["others"], (self.batch, self.owner)).fetchall()
        return {
            key: status if owner is None else f"{status} by {owner}" for key, status, owner in rows
        }

    def close(self) -> None:
        """Give back the rows still claimed (a clean stop frees them at once)."""
        with self._lock:
            try:
                if self.batch:
                    self._db.execute(SQL["release_mine"], (self.batch, self.owner))
            finally:
                self._db.close()
