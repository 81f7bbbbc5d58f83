"""PostgresLedger: one account's quota for every machine that shares a Postgres database.

Each request is one transaction that first takes ``pg_advisory_xact_lock`` for the account
(so a check and its grant are atomic across machines), then reads the database's clock once
(``clock_timestamp()`` *after* the lock: ``now()`` would be the time the transaction began,
before any wait for the lock) and uses that one reading for everything it decides. Machines'
own clocks never enter into it.

Slots and submissions are rows of ``quota_leases``. A slot is held until released or until
its lease runs out (renewed by the holder's heartbeat), so a dead worker's slots come back
after ``lease_s``. A submission occupies the one-second window from its grant until
``window`` after its answer; one whose worker died before the answer, until ``window``
after its lease ran out. Releases ``NOTIFY`` the account's waiters, which a listener
thread hands to :meth:`watch` callbacks, so a waiter on any machine wakes at once.

psycopg (the ``team`` extra) is imported only here, only for a ``postgresql://`` state.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ..quota import Quota, window_for
from .base import DEFAULT_LEASE_S, Answer, Watchers, alive, new_owner

#: The longest a refused waiter sleeps before asking again, notification or not (a
#: notification lost while the listener reconnects costs at most this).
MAX_WAIT_S = 2.0
CHANNEL = "wanrecipe_quota"
#: A request the database could not answer is refused with this wait (then asked again).
RETRY_S = 0.5
#: The longest a new ledger waits for its listener to be in place.
LISTEN_READY_S = 5.0

SQL: dict[str, str] = {
    "schema": """
        CREATE TABLE IF NOT EXISTS quota_leases (
            id text PRIMARY KEY,
            account text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('slot', 'submit')),
            owner text NOT NULL,
            node text,
            granted double precision NOT NULL,
            released double precision,
            expires double precision NOT NULL
        );
        CREATE INDEX IF NOT EXISTS quota_leases_account ON quota_leases (account, kind)
    """,
    "lock": "SELECT pg_advisory_xact_lock(%s)",
    "now": "SELECT extract(epoch FROM clock_timestamp())::float8",
    "expire_slots": (
        "DELETE FROM quota_leases WHERE account = %s AND kind = 'slot' AND expires <= %s"
    ),
    "count_slots": (
        "SELECT count(*), min(expires) FROM quota_leases WHERE account = %s AND kind = 'slot'"
    ),
    "expire_submits": (
        "DELETE FROM quota_leases WHERE account = %s AND kind = 'submit'"
        " AND COALESCE(released, expires) + %s <= %s"
    ),
    "submits": (
        "SELECT released, expires FROM quota_leases WHERE account = %s AND kind = 'submit'"
    ),
    "grant": (
        "INSERT INTO quota_leases (id, account, kind, owner, node, granted, released, expires)"
        " VALUES (%s, %s, %s, %s, %s, %s, NULL, %s)"
    ),
    "release_slot": "DELETE FROM quota_leases WHERE id = %s AND kind = 'slot'",
    "submit_done": "UPDATE quota_leases SET released = %s WHERE id = %s AND released IS NULL",
    "renew": (
        "UPDATE quota_leases SET expires = %s WHERE owner = %s AND released IS NULL"
        " AND expires > %s"
    ),
    "owners": (
        "SELECT DISTINCT owner FROM quota_leases"
        " WHERE account = %s AND released IS NULL AND node = %s"
    ),
    "drop_slots_of": "DELETE FROM quota_leases WHERE owner = %s AND kind = 'slot'",
    "end_submits_of": (
        "UPDATE quota_leases SET released = %s WHERE owner = %s AND released IS NULL"
    ),
    "notify": "SELECT pg_notify(%s, %s)",
    "listen": f"LISTEN {CHANNEL}",
}


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def node_id() -> str | None:
    """Where a pid means something: this kernel boot and this pid namespace. Two containers
    share a hostname as easily as a boot id, never both a boot and a pid namespace. None
    where it cannot be told (then no lease is ever freed early by a pid check)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}:{pidns}"


class PostgresLedger:
    """The account's quota, shared by every process on every machine using this database.

    ``clock`` replaces the database's clock (tests only); ``reap_local=False`` turns off the
    same-node shortcut that frees a dead local process's leases at once (as a ledger on
    another machine sees them: free when the lease runs out); ``max_wait_s`` caps a refused
    waiter's sleep (it is woken sooner by a release's notification).
    """

    quick = False  # every operation is a round trip to the database

    def __init__(
        self,
        url: str,
        quota: Quota,
        account: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] | None = None,
        reap_local: bool = True,
        listen: bool = True,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.quota = quota
        self.account = account
        self.lease_s = lease_s
        self.owner = new_owner()
        self.node = node_id() if reap_local else None
        self._clock = clock
        self.max_wait_s = max_wait_s
        self._capacity, window = window_for(quota.submit_rps)
        self._window = window + quota.margin
        self._key = advisory_key(f"wanrecipe.quota\n{account}")
        self._lock = threading.Lock()
        self._watchers = Watchers()
        self._db: Any = psycopg.connect(url, autocommit=True)
        with self._db.transaction():
            self._db.execute(SQL["lock"], (advisory_key("wanrecipe.quota.schema"),))
            self._db.execute(SQL["schema"])
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None
        if listen:
            self._listener = threading.Thread(target=self._listen, name="quota-listen", daemon=True)
            self._listener.start()
            # A release notified before the LISTEN is in place would be missed, and its
            # waiter would sleep its whole wait: a ledger is ready once it listens.
            self._listening.wait(timeout=LISTEN_READY_S)

    # -- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def _txn(self) -> Iterator[tuple[Any, float]]:
        """One transaction under the account's advisory lock, with the clock read once.

        A connection that dropped (a database restart, a network blip) is opened again by
        the next transaction; the one that saw it raises OperationalError, which every
        caller turns into a safe answer (a refusal; a release left to its lease).
        """
        with self._lock:
            if self._db.closed or self._db.broken:
                self._db = self._psycopg.connect(self.url, autocommit=True)
            with self._db.transaction():
                yield self._db, self._now()

    def _now(self) -> float:
        self._db.execute(SQL["lock"], (self._key,))
        if self._clock is not None:
            return self._clock()
        return float(self._db.execute(SQL["now"]).fetchone()[0])

    def _grant(self, db: Any, kind: str, now: float) -> Answer:
        lease = uuid.uuid4().hex
        db.execute(
            SQL["grant"],
            (lease, self.account, kind, self.owner, self.node, now, now + self.lease_s),
        )
        return Answer.grant(lease)

    # -- slots ---------------------------------------------------------------------------

    def try_slot(self) -> Answer:
        try:
            return self._try_slot()
        except self._psycopg.OperationalError:
            return Answer.refuse(RETRY_S)  # never a grant the database did not record

    def _try_slot(self) -> Answer:
        with self._txn() as (db, now):
            db.execute(SQL["expire_slots"], (self.account, now))
            held, soonest = db.execute(SQL["count_slots"], (self.account,)).fetchone()
            if held >= self.quota.concurrency and self._reap(db, now):
                held, soonest = db.execute(SQL["count_slots"], (self.account,)).fetchone()
            if held < self.quota.concurrency:
                return self._grant(db, "slot", now)
            # Woken by a release's notification; else when the first lease would run out.
            return Answer.refuse(min(self.max_wait_s, float(soonest) - now))

    def release_slot(self, lease: str) -> None:
        # Unreachable database: the slot stays taken until its lease runs out (never longer).
        with contextlib.suppress(self._psycopg.OperationalError), self._txn() as (db, _):
            db.execute(SQL["release_slot"], (lease,))
            db.execute(SQL["notify"], (CHANNEL, self.account))
        self._watchers.fire()

    # -- submissions ---------------------------------------------------------------------

    def try_submit(self) -> Answer:
        try:
            return self._try_submit()
        except self._psycopg.OperationalError:
            return Answer.refuse(RETRY_S)

    def _try_submit(self) -> Answer:
        with self._txn() as (db, now):
            db.execute(SQL["expire_submits"], (self.account, self._window, now))
            rows = db.execute(SQL["submits"], (self.account,)).fetchall()
            in_flight = any(released is None for released, _ in rows)
            if len(rows) >= self._capacity and in_flight and self._reap(db, now):
                rows = db.execute(SQL["submits"], (self.account,)).fetchall()
            if len(rows) < self._capacity:
                return self._grant(db, "submit", now)
            ends = [
                (released if released is not None else expires) + self._window - now
                for released, expires in rows
            ]
            return Answer.refuse(min(self.max_wait_s, *ends))

    def submit_done(self, lease: str) -> None:
        # Unreachable database: the submit holds its place until its lease and the window end.
        with contextlib.suppress(self._psycopg.OperationalError), self._txn() as (db, now):
            db.execute(SQL["submit_done"], (now, lease))
            db.execute(SQL["notify"], (CHANNEL, self.account))
        self._watchers.fire()

    # -- leases --------------------------------------------------------------------------

    def _reap(self, db: Any, now: float) -> bool:
        """Free at once what dead processes *on this node* hold (same boot, same pid
        namespace: there a pid can be checked). True if anything was freed."""
        if self.node is None:
            return False
        dead = []
        for (owner,) in db.execute(SQL["owners"], (self.account, self.node)).fetchall():
            pid = str(owner).split(":")[1] if str(owner).count(":") >= 2 else ""
            if pid.isdigit() and not alive(int(pid)):
                dead.append(owner)
        for owner in dead:
            db.execute(SQL["drop_slots_of"], (owner,))
            db.execute(SQL["end_submits_of"], (now, owner))
        return bool(dead)

    def renew(self) -> None:
        """Extend this process's live leases (best effort: a lost beat is retried by the
        next; a lease that already ran out stays out, its slot may be someone else's)."""
        with contextlib.suppress(self._psycopg.Error), self._txn() as (db, now):
            db.execute(SQL["renew"], (now + self.lease_s, self.owner, now))

    def watch(self, callback: Callable[[], None]) -> None:
        self._watchers.add(callback)

    def _listen(self) -> None:
        """LISTEN on the account's channel; every notification for it fires the watchers."""
        conn: Any = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._psycopg.connect(self.url, autocommit=True)
                    conn.execute(SQL["listen"])
                    self._listening.set()
                for note in conn.notifies(timeout=0.25):
                    if note.payload == self.account:
                        self._watchers.fire()
            except self._psycopg.Error:
                if conn is not None:
                    with contextlib.suppress(self._psycopg.Error):
                        conn.close()
                conn = None
                self._stop.wait(0.5)
        if conn is not None:
            with contextlib.suppress(self._psycopg.Error):
                conn.close()

    def close(self) -> None:
        """Give back whatever this process still holds (a clean exit frees at once)."""
        with contextlib.suppress(self._psycopg.Error), self._txn() as (db, now):
            db.execute(SQL["drop_slots_of"], (self.owner,))
            db.execute(SQL["end_submits_of"], (now, self.owner))
            db.execute(SQL["notify"], (CHANNEL, self.account))
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5.0)
        with self._lock:
            self._db.close()
