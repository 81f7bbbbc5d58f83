"""Liveness, one policy over both databases: which workers are alive (heartbeats), which
attempts are orphans, and who reconciles an orphan. Also the seeds runs drew.

A worker is a process (host, pid) running a scheduler. It writes its heartbeat
(``owners``: host, pid, last seen) every ``heartbeat_interval_s`` and signs off at its end. An
attempt's owner is live when:

- on this host, its pid runs and its heartbeat is not stale (the pid check is only a
  shortcut: a dead pid is dead at once, but a live pid with a stale heartbeat is a hung
  process or a reused pid);
- elsewhere, its heartbeat is younger than the TTL (``heartbeat_ttl_s``, 30 s by default,
  ``WANRECIPE_HEARTBEAT_TTL``), on the database's clock (Postgres) so workers' clocks never
  matter.

An unfinished attempt whose owner is not live is an **orphan**. A live worker that needs the
key takes it over with ``take_over`` before reconciling it (re-attach to its task, or look its
lost submit up in the task list): one short transaction that locks the key (Postgres:
``pg_advisory_xact_lock``; SQLite: the write lock), checks again that the owner is gone, and
moves the attempt to the taker only from the owner the taker saw (compare and set). So exactly
one worker reconciles a given orphan; the others now see a live owner and wait for it.

``seeds`` keeps the seed first drawn for a step, so two runs started at once draw the same one
and send the same request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from ..durations import parse_duration
from .dialect import Dialect
from .records import UNFINISHED, Attempt

if TYPE_CHECKING:
    from .dialect import Row, Tx

#: The default heartbeat TTL: a worker not seen for this long is taken for dead...
HEARTBEAT_STALE_S: Final = 30.0
#: ...and a worker writes its heartbeat this often by default (TTL / 6).
HEARTBEAT_S: Final = 5.0
#: The environment variable that sets the TTL (``45``, ``45s``, ``2m``).
TTL_ENV: Final = "WANRECIPE_HEARTBEAT_TTL"


def heartbeat_ttl(value: float | None = None, env: Mapping[str, str] | None = None) -> float:
    """The heartbeat TTL in seconds: ``value``, else ``WANRECIPE_HEARTBEAT_TTL``, else 30 s.
    Raises ValueError for a TTL that is not a positive duration."""
    if value is not None:
        if value <= 0:
            raise ValueError(f"the heartbeat TTL must be positive, not {value!r}")
        return float(value)
    given = (os.environ if env is None else env).get(TTL_ENV)
    if not given:
        return HEARTBEAT_STALE_S
    try:
        return parse_duration(given)
    except ValueError as exc:
        raise ValueError(f"{TTL_ENV}={given!r}: {exc} (e.g. 30s, 2m)") from None


class Liveness:
    """Heartbeats, orphans and seeds (mixed into the journal; one policy, any dialect)."""

    _db: Dialect
    _host: str
    heartbeat_ttl_s: float

    def _attempts(self, tx: Tx, rows: list[Row]) -> list[Attempt]:
        raise NotImplementedError  # the policy's (records with their results)

    @property
    def heartbeat_interval_s(self) -> float:
        """How often a worker writes its heartbeat: six beats per TTL."""
        return self.heartbeat_ttl_s / 6

    def claim_seed(self, *, recipe: str, step: str, identity: str, seed: int) -> int:
        """The seed of this step and identity: ``seed`` if none was claimed before, else the
        one claimed first (two runs started at once then send the same request, and the
        second finds the first's work instead of paying for another image)."""
        where = {"recipe": recipe, "step": step, "identity": identity}
        with self._db.write() as tx:
            tx.run("claim_seed", **where, seed=int(seed))
            row = tx.one("seed_of", **where)
        assert row is not None
        return int(row["seed"])

    # -- heartbeats -----------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """This process is alive and running (every ``heartbeat_interval_s`` while a run goes
        on)."""
        with self._db.write() as tx:
            tx.run("heartbeat", host=self._host, pid=os.getpid(), now=tx.now())

    def sign_off(self) -> None:
        """This process's run is over: its heartbeat row goes."""
        with self._db.write() as tx:
            tx.run("sign_off", host=self._host, pid=os.getpid())

    def owner_seen(self, host: str, pid: int) -> float | None:
        """When the process ``pid`` on ``host`` last wrote its heartbeat (None: never, or it
        signed off)."""
        with self._db.read() as tx:
            row = tx.one("owner_seen", host=host, pid=pid)
        return None if row is None else float(row["seen_at"])

    def owner_live(self, attempt: Attempt) -> bool:
        """Whether the process that owns ``attempt`` is still working on it: a pid check on this
        host (False is reliable), else a heartbeat younger than the TTL."""
        alive = attempt.owner_alive()
        if alive is False:
            return False
        with self._db.read() as tx:
            row = tx.one("owner_seen", host=attempt.owner_host, pid=attempt.owner_pid)
            now = tx.now()
        if row is not None and now - float(row["seen_at"]) > self.heartbeat_ttl_s:
            return False  # a reused pid, or a hung process
        return alive is True or row is not None

    # -- orphans --------------------------------------------------------------------------------

    def take_over(self, attempt: Attempt) -> Attempt | None:
        """Make this process the owner of ``attempt``, an orphan, before reconciling it.

        Returns the attempt as now recorded, or None when it is no orphan any more: finished,
        taken over by another worker first, or its owner proved alive (then wait for it).
        """
        me = (self._host, os.getpid())
        with self._db.write() as tx:
            tx.lock_key(attempt.key)
            row = tx.one("get", id=attempt.id)
            if row is None or row["state"] not in UNFINISHED:
                return None
            owner = (str(row["owner_host"]), int(row["owner_pid"]))
            if owner != (attempt.owner_host, attempt.owner_pid):
                return None  # another worker took it first
            if owner != me:
                current = self._attempts(tx, [row])[0]
                if current.owner_alive() is not False:
                    seen = tx.one("owner_seen", host=owner[0], pid=owner[1])
                    if (
                        seen is not None
                        and tx.now() - float(seen["seen_at"]) <= self.heartbeat_ttl_s
                    ):
                        return None  # it came back: not an orphan
                taken = tx.claim(
                    "take_over", id=attempt.id, host=me[0], pid=me[1],
                    old_host=owner[0], old_pid=owner[1],
                )  # fmt: skip
                if taken is None:
                    return None
                row = tx.one("get", id=attempt.id)
                assert row is not None
            return self._attempts(tx, [row])[0]
