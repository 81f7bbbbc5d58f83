"""StateDirLedger: the account's quota shared through an SQLite file in the state directory.

Every ``wanrecipe run`` on one machine that shares the state directory shares the account's
quota. Slots are leases renewed by a heartbeat: a process killed with slots held blocks the
others for at most ``lease_s`` (on the same host at once: a lease whose process is gone is
freed).
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from ..quota import Quota, window_for
from .base import DEFAULT_LEASE_S, SLOT_POLL_S, Answer, Watchers, alive, new_owner

LEDGER_FILE = "quota.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('slot', 'submit')),
    owner TEXT NOT NULL,
    granted REAL NOT NULL,
    released REAL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_account ON leases (account, kind);
"""


class StateDirLedger:
    """The account's quota for every process on this machine that uses this state directory.

    One SQLite file (WAL); every request is one ``BEGIN IMMEDIATE`` transaction, so a check and
    its grant are atomic across processes. Times are wall-clock seconds (every process on one
    machine reads the same clock). A lease not renewed within ``lease_s`` is free again.
    """

    def __init__(
        self,
        state_path: Path,
        quota: Quota,
        account: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.quota = quota
        self.account = account
        self.lease_s = lease_s
        self.owner = new_owner()
        self._watchers = Watchers()
        self._clock = clock
        self._capacity, window = window_for(quota.submit_rps)
        self._window = window + quota.margin
        self._lock = threading.Lock()
        Path(state_path).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            Path(state_path) / LEDGER_FILE,
            timeout=10.0,
            isolation_level=None,
            check_same_thread=False,
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def try_slot(self) -> Answer:
        with self._txn() as db:
            now = self._clock()
            db.execute(
                "DELETE FROM leases WHERE account = ? AND kind = 'slot' AND expires <= ?",
                (self.account, now),
            )
            held, soonest = self._slots_held(db)
            if held >= self.quota.concurrency and self._reap(db, now):
                held, soonest = self._slots_held(db)
            if held < self.quota.concurrency:
                lease = uuid.uuid4().hex
                db.execute(
                    "INSERT INTO leases VALUES (?, ?, 'slot', ?, ?, NULL, ?)",
                    (lease, self.account, self.owner, now, now + self.lease_s),
                )
                return Answer.grant(lease)
            return Answer.refuse(min(SLOT_POLL_S, soonest - now))

    def _slots_held(self, db: sqlite3.Connection) -> tuple[int, float]:
        held, soonest = db.execute(
            "SELECT COUNT(*), MIN(expires) FROM leases WHERE account = ? AND kind = 'slot'",
            (self.account,),
        ).fetchone()
        return int(held), float(soonest or 0.0)

    def _reap(self, db: sqlite3.Connection, now: float) -> bool:
        """Free at once what dead processes *on this host* hold (a same-host shortcut, as
        the journal's pid check; elsewhere the lease runs out). True if anything was freed."""
        host = socket.gethostname()
        dead = []
        for (owner,) in db.execute(
            "SELECT DISTINCT owner FROM leases WHERE account = ? AND released IS NULL",
            (self.account,),
        ):
            owner_host, _, rest = str(owner).partition(":")
            pid = rest.partition(":")[0]
            if owner_host == host and pid.isdigit() and not alive(int(pid)):
                dead.append(owner)
        for owner in dead:
            db.execute("DELETE FROM leases WHERE owner = ? AND kind = 'slot'", (owner,))
            db.execute(
                "UPDATE leases SET released = ? WHERE owner = ? AND released IS NULL",
                (now, owner),
            )
        return bool(dead)

    def release_slot(self, lease: str) -> None:
        with self._txn() as db:
            db.execute("DELETE FROM leases WHERE id = ?", (lease,))
        self._watchers.fire()

    def try_submit(self) -> Answer:
        with self._txn() as db:
            now = self._clock()
            # A submit occupies the window until `window` after its answer; one whose process
            # died before the answer, until `window` after its lease ran out.
            db.execute(
                "DELETE FROM leases WHERE account = ? AND kind = 'submit' "
                "AND COALESCE(released, expires) + ? <= ?",
                (self.account, self._window, now),
            )
            rows = db.execute(
                "SELECT released, expires FROM leases WHERE account = ? AND kind = 'submit'",
                (self.account,),
            ).fetchall()
            held = any(r is None for r, _ in rows)
            if len(rows) >= self._capacity and held and self._reap(db, now):
                rows = db.execute(
                    "SELECT released, expires FROM leases WHERE account = ? AND kind = 'submit'",
                    (self.account,),
                ).fetchall()
            if len(rows) < self._capacity:
                lease = uuid.uuid4().hex
                db.execute(
                    "INSERT INTO leases VALUES (?, ?, 'submit', ?, ?, NULL, ?)",
                    (lease, self.account, self.owner, now, now + self.lease_s),
                )
                return Answer.grant(lease)
            ends = [r + self._window - now for r, _ in rows if r is not None]
            return Answer.refuse(min(ends) if ends else SLOT_POLL_S)

    def submit_done(self, lease: str) -> None:
        with self._txn() as db:
            db.execute("UPDATE leases SET released = ? WHERE id = ?", (self._clock(), lease))
        self._watchers.fire()

    def renew(self) -> None:
        with contextlib.suppress(sqlite3.Error), self._txn() as db:
            db.execute(
                "UPDATE leases SET expires = ? WHERE owner = ? AND released IS NULL",
                (self._clock() + self.lease_s, self.owner),
            )

    def watch(self, callback: Callable[[], None]) -> None:
        self._watchers.add(callback)

    def close(self) -> None:
        """Give back whatever this process still holds (a clean exit frees at once)."""
        with contextlib.suppress(sqlite3.Error), self._txn() as db:
            db.execute("DELETE FROM leases WHERE owner = ? AND kind = 'slot'", (self.owner,))
            db.execute(
                "UPDATE leases SET released = ? WHERE owner = ? AND released IS NULL",
                (self._clock(), self.owner),
            )
        with self._lock:
            self._db.close()
