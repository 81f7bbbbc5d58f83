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

from ...store.sqlite_retry import begin_now, enter_wal, until_unlocked
from ..quota import Quota, window_for
from .base import DEFAULT_LEASE_S, MIN_WAIT_S, SLOT_POLL_S, Answer, Watchers, alive, new_owner

LEDGER_FILE = "quota.sqlite"
#: How long a transaction that may wait (a heartbeat, a late release) waits for the file.
BUSY_WAIT_S = 10.0

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

    Quick (see :class:`QuotaLedger`): a transaction takes a few tens of microseconds and
    commits without an fsync (``synchronous=NORMAL`` in WAL: a power loss may forget a
    lease, which only frees a slot early on a machine that just rebooted), so the gate asks
    on the event loop. Nothing here waits: a ledger another process (or a heartbeat of this
    one) is writing to refuses for ``MIN_WAIT_S`` instead of waiting for it, and a release
    that cannot be written at once is written from a thread (the slot stays taken, never
    over quota, for those few ms). The WAL is checkpointed by the heartbeat, off the loop.
    """

    quick = True

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
        self._late: list[threading.Thread] = []  # releases written from a thread
        Path(state_path).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            Path(state_path) / LEDGER_FILE,
            timeout=BUSY_WAIT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        with self._lock:
            # Another process may be creating the same fresh file: wait for it here; from
            # then on the connection never waits inside SQLite (see _txn).
            enter_wal(self._db, within_s=BUSY_WAIT_S)
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints (an fsync) are the heartbeat's, never a commit's on the loop.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.executescript(_SCHEMA)
            self._db.execute("PRAGMA busy_timeout=0")

    @contextlib.contextmanager
    def _txn(self, *, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``wait=False``: raise :class:`_Busy` at once when this
        process's connection or the file's write lock is taken, instead of waiting (the
        connection has no busy timeout; ``wait=True`` retries for up to ``BUSY_WAIT_S``)."""
        if not self._lock.acquire(blocking=wait):
            raise _Busy()
        try:

            def begin() -> sqlite3.Cursor:
                return self._db.execute("BEGIN IMMEDIATE")

            if wait:
                until_unlocked(begin, within_s=BUSY_WAIT_S, max_pause_s=0.02)
            else:
                begin_now(self._db, _Busy)
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            self._lock.release()

    def _release(self, sql: str, args: tuple[object, ...]) -> None:
        """A release: at once when the file is free, else from a thread (never lost, never
        waited for by the caller)."""
        try:
            with self._txn(wait=False) as db:
                db.execute(sql, args)
        except _Busy:
            late = threading.Thread(target=self._release_late, args=(sql, args), daemon=True)
            self._late = [t for t in self._late if t.is_alive()] + [late]
            late.start()
            return
        self._watchers.fire()

    def _release_late(self, sql: str, args: tuple[object, ...]) -> None:
        with contextlib.suppress(sqlite3.Error), self._txn() as db:
            db.execute(sql, args)
        self._watchers.fire()

    def try_slot(self) -> Answer:
        try:
            with self._txn(wait=False) as db:
                return self._try_slot(db)
        except _Busy:
            return Answer.refuse(MIN_WAIT_S)

    def _try_slot(self, db: sqlite3.Connection) -> Answer:
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
        self._release("DELETE FROM leases WHERE id = ?", (lease,))

    def try_submit(self) -> Answer:
        try:
            with self._txn(wait=False) as db:
                return self._try_submit(db)
        except _Busy:
            return Answer.refuse(MIN_WAIT_S)

    def _try_submit(self, db: sqlite3.Connection) -> Answer:
        now = self._clock()
        # A submit occupies the window until `window` after its answer; one whose process
        # died before the answer, until `window` after its lease ran out.
        db.execute(
            "DELETE FROM leases WHERE account = ? AND kind = 'submit' "
            "AND COALESCE(released, expires) + ? <= ?",
            (self.account, self._window, now),
        )
        taken, unanswered, first_answer = self._submits_in_window(db)
        if taken >= self._capacity and unanswered and self._reap(db, now):
            taken, unanswered, first_answer = self._submits_in_window(db)
        if taken < self._capacity:
            lease = uuid.uuid4().hex
            db.execute(
                "INSERT INTO leases VALUES (?, ?, 'submit', ?, ?, NULL, ?)",
                (lease, self.account, self.owner, now, now + self.lease_s),
            )
            return Answer.grant(lease)
        if first_answer is None:  # all unanswered: one comes back within the slot poll
            return Answer.refuse(SLOT_POLL_S)
        return Answer.refuse(float(first_answer) + self._window - now)

    def _submits_in_window(self, db: sqlite3.Connection) -> tuple[int, int, float | None]:
        """(submits in the window, how many of them await their answer, the earliest answer),
        counted by SQLite: a quota of 50/s keeps 50 rows in the window."""
        taken, unanswered, first = db.execute(
            "SELECT COUNT(*), COUNT(*) - COUNT(released), MIN(released) FROM leases "
            "WHERE account = ? AND kind = 'submit'",
            (self.account,),
        ).fetchone()
        return int(taken), int(unanswered), first

    def submit_done(self, lease: str) -> None:
        self._release("UPDATE leases SET released = ? WHERE id = ?", (self._clock(), lease))

    def renew(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            with self._txn() as db:
                db.execute(
                    "UPDATE leases SET expires = ? WHERE owner = ? AND released IS NULL",
                    (self._clock() + self.lease_s, self.owner),
                )
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def watch(self, callback: Callable[[], None]) -> None:
        self._watchers.add(callback)

    def close(self) -> None:
        """Give back whatever this process still holds (a clean exit frees at once)."""
        for late in self._late:
            late.join()
        with contextlib.suppress(sqlite3.Error), self._txn() as db:
            db.execute("DELETE FROM leases WHERE owner = ? AND kind = 'slot'", (self.owner,))
            db.execute(
                "UPDATE leases SET released = ? WHERE owner = ? AND released IS NULL",
                (self._clock(), self.owner),
            )
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._db.close()


class _Busy(Exception):
    """The ledger is being written (by another process, or this one's heartbeat)."""
