"""Schema v2 of the journal: which runs are alive (heartbeats) and the seeds runs drew.

A run waiting on another run's step must tell a dead owner from a slow one: a pid check does it
on this host; the heartbeat (``owners``: host, pid, last seen) does it where a pid check cannot,
and catches a hung process or a reused pid. ``seeds`` keeps the seed first drawn for a step, so
two runs started at once draw the same one and send the same request.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .journal import Attempt

# v2: each running process's last heartbeat, so a run waiting on another run's step can tell
# a dead owner (no heartbeat for HEARTBEAT_STALE_S) even where a pid check cannot (another host);
# and the seed first drawn for a step, so two runs started at once draw the same one.
_SCHEMA_V2: Final = """
CREATE TABLE IF NOT EXISTS owners (
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    started  REAL NOT NULL,
    seen_at  REAL NOT NULL,
    PRIMARY KEY (host, pid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seeds (
    recipe    TEXT NOT NULL,
    step      TEXT NOT NULL,
    identity  TEXT NOT NULL,
    seed      INTEGER NOT NULL,
    PRIMARY KEY (recipe, step, identity)
) WITHOUT ROWID;
"""
#: A run writes its heartbeat this often...
HEARTBEAT_S: Final = 5.0
#: ...and one not seen for this long is taken for dead.
HEARTBEAT_STALE_S: Final = 30.0


class Liveness:
    """The journal's heartbeat and seed methods (mixed into ``Journal``)."""

    _clock: Callable[[], float]
    _host: str

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def claim_seed(self, *, recipe: str, step: str, identity: str, seed: int) -> int:
        """The seed of this step and identity: ``seed`` if none was claimed before, else the
        one claimed first (two runs started at once then send the same request, and the
        second finds the first's work instead of paying for another image)."""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO seeds (recipe, step, identity, seed) VALUES (?, ?, ?, ?)",
                (recipe, step, identity, int(seed)),
            )
            row = db.execute(
                "SELECT seed FROM seeds WHERE recipe = ? AND step = ? AND identity = ?",
                (recipe, step, identity),
            ).fetchone()
        return int(row[0])

    # -- liveness -----------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """This process is alive and running (every ``HEARTBEAT_S`` while a run goes on)."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "INSERT INTO owners (host, pid, started, seen_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (host, pid) DO UPDATE SET seen_at = excluded.seen_at",
                (self._host, os.getpid(), now, now),
            )

    def sign_off(self) -> None:
        """This process's run is over: its heartbeat row goes."""
        with self._write() as db:
            db.execute("DELETE FROM owners WHERE host = ? AND pid = ?", (self._host, os.getpid()))

    def owner_seen(self, host: str, pid: int) -> float | None:
        """When the process ``pid`` on ``host`` last wrote its heartbeat (None: never, or it
        signed off)."""
        with self._read() as db:
            row = db.execute(
                "SELECT seen_at FROM owners WHERE host = ? AND pid = ?", (host, pid)
            ).fetchone()
        return None if row is None else float(row[0])

    def owner_live(self, attempt: Attempt) -> bool:
        """Whether the process that owns ``attempt`` is still working on it: a pid check on this
        host (False is reliable), else a heartbeat younger than ``HEARTBEAT_STALE_S``."""
        alive = attempt.owner_alive()
        if alive is False:
            return False
        seen = self.owner_seen(attempt.owner_host, attempt.owner_pid)
        if seen is not None and self._clock() - seen > HEARTBEAT_STALE_S:
            return False  # a reused pid, or a hung process
        return alive is True or seen is not None
