"""The journal's policy, written once for every database: the attempt protocol, which
transitions are allowed, when a key is busy, what counts as in flight, dangling or cached, and
what gc may forget. The SQL is the dialect's (``dialect.py``, ``sql/*.sql``).

Protocol (the executor's side): ``record_intent`` before submitting, ``record_submitted`` the
moment the submit returns a task id, store the result blobs, then ``record_done``. A row left in
``intent`` (no task id) after a crash means "may have been billed"; a ``submitted`` row younger
than 24 h can be re-attached instead of submitted again.

The database keeps the invariant "at most one live (intent or submitted) attempt per content
key" with a partial unique index, and claiming a key is the insert that index may refuse:
never a look followed by an insert, so two workers on two machines cannot both claim a key.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ..errors import StoreError
from .blobs_api import Blobs
from .dialect import Dialect, Row, Tx
from .liveness import Liveness
from .records import (
    DEFAULT_MAX_AGE_S,
    FINISHED,
    TRANSITIONS,
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
)

_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class JournalBase(Liveness):
    """Every journal operation over a dialect. ``Journal`` (SQLite) and ``PostgresJournal``
    only open their database; the list of operations is ``ops.JournalOps``."""

    blobs: Blobs

    def __init__(self, db: Dialect, blobs: Blobs, *, host: str, heartbeat_ttl_s: float) -> None:
        self._db = db
        self.blobs = blobs
        self._host = host
        self.heartbeat_ttl_s = heartbeat_ttl_s

    @property
    def location(self) -> str:
        """Where the journal lives, fit for messages: a path, or a URL without a password."""
        return self._db.location

    @property
    def dialect(self) -> str:
        return self._db.name

    @property
    def reads_quick(self) -> bool:
        return self._db.local and not self.blobs.remote

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JournalBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol ---------------------------------------------------------------------------

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
        quick: bool = False,
    ) -> int:
        """Record that we are about to submit; durable when this returns. Returns the attempt id.

        ``request`` is the already redacted request summary (no keys, no signed URLs).

        The insert is the claim: while another attempt of ``key`` is live (intent, or
        submitted, younger than 24 h) the database refuses it and this raises ``KeyBusy``
        with that attempt (re-attach to it, wait for its owner, or reconcile it when its
        owner is gone). A live attempt older than 24 h has nothing left to re-attach to: it
        is abandoned, saying so, and the claim made. ``exclusive=True`` also refuses a key
        that is done with all its blobs (two runs that looked the key up at the same moment:
        the second takes the first's result), checked in the same transaction after the
        insert, so a done mark committed meanwhile is seen.

        ``quick=True`` (for the event loop): raise ``WouldWait``, nothing written, where the
        write would wait (another writer holds the database, or it is a round trip away).
        """
        if not _HEX64.fullmatch(key):
            raise ValueError(f"not a content key (64 lowercase hex digits): {key!r}")
        request_json = json.dumps(request, sort_keys=True, ensure_ascii=False, allow_nan=False)
        with self._db.write(quick=quick) as tx:
            now = tx.now()
            values = {
                "key": key, "step": step, "recipe": recipe, "backend": backend,
                "request_json": request_json, "seed": int(seed), "now": now,
                "host": self._host, "pid": os.getpid(),
            }  # fmt: skip
            for _ in range(3):
                row = tx.claim("claim_key", **values)
                if row is not None:
                    break
                blockers = self._attempts(tx, tx.all("live_of_key", key=key))
                cutoff = now - DEFAULT_MAX_AGE_S
                expired = [a for a in blockers if (a.submitted_at or a.created_at) < cutoff]
                if len(expired) < len(blockers):
                    raise KeyBusy(key, tuple(a for a in blockers if a not in expired))
                for a in expired:
                    tx.run("retire", id=a.id, now=now, reason=_EXPIRED)
            else:  # pragma: no cover - three refusals by attempts that vanished at once
                raise StoreError(f"{self.location}: cannot claim key {key[:12]}; try again")
            if exclusive:
                done = self._first_complete(self._attempts(tx, tx.all("done_of_key", key=key)))
                if done is not None:
                    raise KeyBusy(key, (done.attempt,))  # the insert is rolled back
            return int(row["id"])

    def record_submitted(
        self, attempt_id: int, task_id: str, request_id: str | None, *, quick: bool = False
    ) -> None:
        """The service accepted the submit: remember the task id at once. ``quick=True``:
        ``WouldWait``, nothing written, as for ``record_intent``."""
        if not task_id:
            raise ValueError("a submitted attempt needs the task id the service returned")
        with self._db.write(durable=False, quick=quick) as tx:
            self._transition(tx, attempt_id, "submitted", task_id=task_id, request_id=request_id)

    def record_done(
        self,
        attempt_id: int,
        results: Sequence[ResultRecord],
        usage_images: int,
        *,
        quick: bool = False,
    ) -> None:
        """Mark the task SUCCEEDED. Every result's blob must already be in the store.

        Idempotent for an attempt that is already done (its first results are kept).
        ``quick=True``: ``WouldWait``, nothing written, as for ``record_intent``.
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
        with self._db.write(durable=False, quick=quick) as tx:
            if self._row(tx, attempt_id)["state"] == "done":
                return
            self._transition(tx, attempt_id, "done", usage_images=int(usage_images))
            for r in results:
                tx.run(
                    "add_result", attempt_id=attempt_id, idx=r.index, sha256=r.sha256,
                    size=r.size, width=r.width, height=r.height, url_redacted=r.url_redacted,
                )  # fmt: skip

    def record_failed(self, attempt_id: int, code: str, message: str) -> None:
        with self._db.write(durable=False) as tx:
            self._transition(tx, attempt_id, "failed", code=code, message=message)

    def record_abandoned(self, attempt_id: int, reason: str) -> None:
        """We stop waiting for this attempt (expired, budget, gave up reconciling)."""
        with self._db.write(durable=False) as tx:
            self._transition(tx, attempt_id, "abandoned", reason=reason)

    def _row(self, tx: Tx, attempt_id: int) -> Row:
        row = tx.one("get", id=attempt_id)
        if row is None:
            raise StoreError(f"no attempt {attempt_id} in {self.location}")
        return row

    def _transition(self, tx: Tx, attempt_id: int, new: str, **values: Any) -> None:
        query = f"to_{new}"
        params = {"id": attempt_id, "allowed": list(TRANSITIONS[new]), "now": tx.now(), **values}
        # Only ``submitted`` makes an attempt live again (from abandoned): the index may say no.
        if (tx.claim if new == "submitted" else tx.one)(query, **params) is not None:
            return
        row = self._row(tx, attempt_id)
        if new == "submitted" and row["state"] in TRANSITIONS[new]:
            live = self._attempts(tx, tx.all("live_of_key", key=row["key"]))
            raise KeyBusy(str(row["key"]), tuple(live))
        raise InvalidTransition(f"attempt {attempt_id} is {row['state']}; it cannot become {new}")

    # -- queries --------------------------------------------------------------------------------

    def get(self, attempt_id: int) -> Attempt:
        with self._db.read() as tx:
            return self._attempts(tx, [self._row(tx, attempt_id)])[0]

    def lookup_done(self, key: str) -> DoneEntry | None:
        """The newest done attempt for ``key`` whose blobs are all in the store, if any."""
        with self._db.read() as tx:
            return self._first_complete(self._attempts(tx, tx.all("done_of_key", key=key)))

    def in_flight(self, key: str, *, max_age_s: float = DEFAULT_MAX_AGE_S) -> list[Attempt]:
        """Unfinished attempts for ``key`` younger than ``max_age_s``, oldest first.

        ``submitted`` ones (age from the submit) can be re-attached by task id; ``intent`` ones
        (age from the intent) are dangling: the submit may have been billed.
        """
        with self._db.read() as tx:
            rows = tx.all("in_flight", key=key, cutoff=tx.now() - max_age_s)
            return self._attempts(tx, rows)

    def unfinished(self) -> list[Attempt]:
        """Every intent/submitted attempt of any key and age (for reconciliation and reports)."""
        with self._db.read() as tx:
            return self._attempts(tx, tx.all("unfinished"))

    def attempts(
        self,
        step: str | None = None,
        key: str | None = None,
        *,
        state: AttemptState | None = None,
        recipe: str | None = None,
    ) -> list[Attempt]:
        """Attempts matching every filter given, oldest first."""
        with self._db.read() as tx:
            rows = tx.all("attempts", step=step, key=key, state=state, recipe=recipe)
            return self._attempts(tx, rows)

    def known_tasks(self, task_ids: Iterable[str]) -> set[str]:
        """Which of ``task_ids`` some attempt of this journal has (any state): a lost
        submit's lookup asks about the task list's few candidates, not every attempt."""
        ids = sorted({str(t) for t in task_ids})
        if not ids:
            return set()
        with self._db.read() as tx:
            return {str(row["task_id"]) for row in tx.all("known_tasks", task_ids=ids)}

    def cache_status(
        self, keys: Iterable[str], *, max_age_s: float = DEFAULT_MAX_AGE_S
    ) -> dict[str, CacheState]:
        """The cache index for ``plan``: one indexed query per 500 keys plus a stat per blob."""
        wanted = list(dict.fromkeys(keys))
        by_key: dict[str, list[Attempt]] = {k: [] for k in wanted}
        with self._db.read() as tx:
            cutoff = tx.now() - max_age_s
            for start in range(0, len(wanted), 500):
                rows = tx.all("of_keys", keys=wanted[start : start + 500])
                for attempt in self._attempts(tx, rows):
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
        with self._db.read() as tx:
            counts = {str(row["state"]): int(row["n"]) for row in tx.all("count_by_state")}
            cached = tx.one("keys_cached")
        blobs = 0
        size = 0
        for digest in self.blobs:
            blob_size = self.blobs.size(digest)
            if blob_size is not None:
                blobs += 1
                size += blob_size
        return JournalStats(counts, int(cached["n"]) if cached else 0, blobs, size)

    def _first_complete(self, done: Iterable[Attempt]) -> DoneEntry | None:
        for attempt in done:
            if attempt.results and all(
                self.blobs.has_complete(r.sha256, r.size) for r in attempt.results
            ):
                return DoneEntry(attempt)
        return None

    def _attempts(self, tx: Tx, rows: list[Row]) -> list[Attempt]:
        ids = [int(row["id"]) for row in rows if row["state"] == "done"]
        results: dict[int, list[ResultRecord]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            for r in tx.all("results_of", ids=ids[start : start + 500]):
                results[int(r["attempt_id"])].append(
                    ResultRecord(
                        int(r["idx"]),
                        str(r["sha256"]),
                        int(r["size"]),
                        r["width"],
                        r["height"],
                        r["url_redacted"],
                    )
                )
        return [_attempt(row, tuple(results.get(int(row["id"]), ()))) for row in rows]

    # -- maintenance (``wanrecipe cache gc|clear``) ---------------------------------------------

    def gc(self, keep_keys: Iterable[str], *, min_blob_age_s: float = 3600.0) -> GcReport:
        """Forget finished attempts whose key is not in ``keep_keys``; delete orphaned blobs.

        Unfinished attempts (intent/submitted) are never deleted: they are the record of what
        may have been billed. Blobs no result refers to go only when older than
        ``min_blob_age_s``, because a concurrent run stores blobs before it records them done.
        """
        keep = list(dict.fromkeys(keep_keys))
        with self._db.write() as tx:
            removed = tx.run("gc_attempts", keep=keep)
        blobs_removed, freed = self._remove_orphans(min_blob_age_s)
        return GcReport(removed, blobs_removed, freed)

    def clear(self, *, include_unfinished: bool = False) -> GcReport:
        """Empty the cache. Unfinished attempts stay unless ``include_unfinished``.

        Meant for when no run is using the state dir: orphaned blobs go whatever their age.
        """
        states = [*UNFINISHED, *FINISHED] if include_unfinished else list(FINISHED)
        with self._db.write() as tx:
            removed = tx.run("clear_attempts", states=states)
        blobs_removed, freed = self._remove_orphans(0.0)
        return GcReport(removed, blobs_removed, freed)

    def _remove_orphans(self, min_age_s: float) -> tuple[int, int]:
        with self._db.read() as tx:
            referenced = {str(row["sha256"]) for row in tx.all("referenced_blobs")}
        # Blob ages are the blob store's (file times): compared with this machine's clock.
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


_EXPIRED: Final = "expired: older than 24 h, its task (if any) is gone; a new attempt took the key"


def _attempt(row: Row, results: tuple[ResultRecord, ...]) -> Attempt:
    return Attempt(
        id=int(row["id"]),
        key=row["key"],
        step=row["step"],
        recipe=row["recipe"],
        backend=row["backend"],
        request=json.loads(row["request_json"]),
        seed=int(row["seed"]),
        state=row["state"],
        task_id=row["task_id"],
        request_id=row["request_id"],
        created_at=float(row["created_at"]),
        submitted_at=None if row["submitted_at"] is None else float(row["submitted_at"]),
        finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
        usage_images=row["usage_images"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        owner_host=row["owner_host"],
        owner_pid=int(row["owner_pid"]),
        results=results,
    )
