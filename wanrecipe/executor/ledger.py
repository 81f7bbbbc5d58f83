"""QuotaLedger: the account's quota shared by every run that uses the account.

The client-side :class:`~wanrecipe.executor.quota.QuotaGate` keeps one process inside the
quota. A ledger keeps *several* processes inside it together: before a task takes a running
slot, or a submit goes out, the process asks the ledger, which answers with an explicit
:class:`Answer` (granted, or not granted and how long to wait). Two implementations:

- :class:`InProcessLedger`: counters in memory (one process; several schedulers may share it);
- :class:`StateDirLedger`: an SQLite file in the state directory, so every ``wanrecipe run``
  on one machine that shares the state directory shares the account's quota. Slots are leases
  renewed by a heartbeat: a process killed with slots held blocks the others for at most
  ``lease_s`` (on the same host at once: a lease whose process is gone is freed).

A database shared by several machines (Postgres) comes later behind the same interface: every
method is one short transaction and the answer says "granted" explicitly, never by a wait of
zero (the classic bug: a computed wait <= 0 taken as a grant that was never recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .quota import Quota, QuotaGate, window_for

#: No answer ever says "wait 0": a refusal always waits at least this long (seconds).
MIN_WAIT_S = 0.005
#: How often a process asks again for a slot another process holds (it cannot be told).
SLOT_POLL_S = 0.1
DEFAULT_LEASE_S = 6.0
LEDGER_FILE = "quota.sqlite"


@dataclass(frozen=True)
class Answer:
    """The ledger's reply to a request for a slot or a submission."""

    granted: bool
    #: Not granted: seconds to wait before asking again (always >= MIN_WAIT_S, never rounded).
    wait_s: float = 0.0
    #: Granted: what to hand back on release.
    lease: str | None = None

    @staticmethod
    def grant(lease: str) -> Answer:
        return Answer(True, 0.0, lease)

    @staticmethod
    def refuse(wait_s: float) -> Answer:
        # A fractional wait stays fractional, and a wait computed as <= 0 (a window that
        # freed itself between two clock reads) is still a refusal: ask again shortly.
        return Answer(False, max(float(wait_s), MIN_WAIT_S), None)


class QuotaLedger(Protocol):
    """One account's quota, shared. Every method is short and thread-safe."""

    def try_slot(self) -> Answer: ...
    def release_slot(self, lease: str) -> None: ...
    def try_submit(self) -> Answer: ...
    def submit_done(self, lease: str) -> None: ...
    def renew(self) -> None: ...
    def close(self) -> None: ...


def account_id(base_url: str, api_key: str) -> str:
    """Which account a quota belongs to: a hash of the key and the service, never the key."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()
    return digest[:24]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class InProcessLedger:
    """The quota of one process, as a ledger (tests, and several schedulers in one process)."""

    def __init__(self, quota: Quota, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.quota = quota
        self._clock = clock
        self._capacity, window = window_for(quota.submit_rps)
        self._window = window + quota.margin
        self._lock = threading.Lock()
        self._slots: set[str] = set()
        self._submits: dict[str, float | None] = {}  # lease -> release time (None: in flight)

    def try_slot(self) -> Answer:
        with self._lock:
            if len(self._slots) < self.quota.concurrency:
                lease = uuid.uuid4().hex
                self._slots.add(lease)
                return Answer.grant(lease)
            return Answer.refuse(SLOT_POLL_S)

    def release_slot(self, lease: str) -> None:
        with self._lock:
            self._slots.discard(lease)

    def try_submit(self) -> Answer:
        with self._lock:
            now = self._clock()
            for lease, released in list(self._submits.items()):
                if released is not None and released + self._window <= now:
                    del self._submits[lease]
            if len(self._submits) < self._capacity:
                lease = uuid.uuid4().hex
                self._submits[lease] = None
                return Answer.grant(lease)
            ends = [r + self._window - now for r in self._submits.values() if r is not None]
            return Answer.refuse(min(ends) if ends else SLOT_POLL_S)

    def submit_done(self, lease: str) -> None:
        with self._lock:
            if lease in self._submits:
                self._submits[lease] = self._clock()

    def renew(self) -> None:
        pass  # nothing expires in one process

    def close(self) -> None:
        pass


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
        self.owner = _owner()
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
            if owner_host == host and pid.isdigit() and not _alive(int(pid)):
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

    def renew(self) -> None:
        with self._txn() as db:
            db.execute(
                "UPDATE leases SET expires = ? WHERE owner = ? AND released IS NULL",
                (self._clock() + self.lease_s, self.owner),
            )

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


class LedgerGate(QuotaGate):
    """A QuotaGate whose slots and submissions are also granted by a ledger.

    The process's own FIFO gate is taken first (so only holders talk to the ledger); then the
    ledger is asked until it grants, sleeping the wait it names. A release in this process
    wakes local waiters at once; another process's release is seen within ``SLOT_POLL_S``.
    While anything is held, a heartbeat renews this process's leases.
    """

    def __init__(
        self,
        quota: Quota,
        ledger: QuotaLedger,
        *,
        heartbeat_s: float = DEFAULT_LEASE_S / 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(quota, clock=clock)
        self.ledger = ledger
        self.heartbeat_s = heartbeat_s
        self._freed: asyncio.Event | None = None
        self._held = 0
        self._heartbeat: asyncio.Task[None] | None = None
        #: How many times a refusal was answered (tests and stats).
        self.refusals = 0

    def slot(self) -> AbstractAsyncContextManager[None]:
        return self._both(super().slot(), self.ledger.try_slot, self.ledger.release_slot)

    def submission(self) -> AbstractAsyncContextManager[None]:
        return self._both(super().submission(), self.ledger.try_submit, self.ledger.submit_done)

    @asynccontextmanager
    async def _both(
        self,
        local: AbstractAsyncContextManager[None],
        ask: Callable[[], Answer],
        give_back: Callable[[str], None],
    ) -> AsyncIterator[None]:
        async with local:
            lease = await self._acquire(ask)
            self._held += 1
            self._ensure_heartbeat()
            try:
                yield
            finally:
                self._held -= 1
                await asyncio.shield(asyncio.to_thread(give_back, lease))
                self._wake()

    async def _acquire(self, ask: Callable[[], Answer]) -> str:
        while True:
            answer = await asyncio.to_thread(ask)
            if answer.granted:
                assert answer.lease is not None
                return answer.lease
            self.refusals += 1
            freed = self._freed_event()
            freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(freed.wait(), answer.wait_s)

    def _freed_event(self) -> asyncio.Event:
        if self._freed is None:
            self._freed = asyncio.Event()
        return self._freed

    def _wake(self) -> None:
        if self._freed is not None:
            self._freed.set()

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name="quota-heartbeat"
            )

    async def _beat(self) -> None:
        while self._held > 0:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(sqlite3.Error):
                await asyncio.to_thread(self.ledger.renew)

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await asyncio.to_thread(self.ledger.close)


def open_gate(
    quota: Quota, *, shared_in: Path | None, base_url: str = "", api_key: str = ""
) -> QuotaGate:
    """The gate for a run: shared through the state directory ``shared_in`` when given (a
    service other runs may use too), else this process's own."""
    if shared_in is None:
        return QuotaGate(quota)
    ledger = StateDirLedger(shared_in, quota, account_id(base_url, api_key))
    return LedgerGate(quota, ledger)


async def close_gate(gate: QuotaGate) -> None:
    if isinstance(gate, LedgerGate):
        await gate.aclose()
