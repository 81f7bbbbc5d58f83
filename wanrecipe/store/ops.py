"""The journal's operations, named once. ``Journal`` (SQLite, ``journal.py``) and
``PostgresJournal`` (``pg_journal.py``) implement exactly this list, both through the one
policy in ``policy.py``; ``tests/store/test_journal_contract.py`` runs one suite on both."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from .blobs_api import Blobs
from .records import (
    Attempt,
    AttemptState,
    CacheState,
    DoneEntry,
    GcReport,
    JournalStats,
    ResultRecord,
)


@runtime_checkable
class JournalOps(Protocol):
    """What the executor, the CLI and the reports may ask of a journal."""

    blobs: Blobs
    heartbeat_ttl_s: float

    @property
    def location(self) -> str:
        """Where it lives, fit for messages (a path, or a URL without its password)."""
        ...

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgres``."""
        ...

    @property
    def heartbeat_interval_s(self) -> float: ...

    @property
    def reads_quick(self) -> bool:
        """Whether ``lookup_done`` and ``in_flight`` need no network and never wait for a
        writer (SQLite and blobs on local disk): the scheduler then calls them on the event
        loop, with no thread hand-off."""
        ...

    # -- the protocol: one attempt's life ------------------------------------------------------

    def record_intent(
        self, key: str, *, step: str, recipe: str, backend: str, request: dict[str, Any],
        seed: int, exclusive: bool = False, quick: bool = False,
    ) -> int: ...  # fmt: skip

    def record_submitted(
        self, attempt_id: int, task_id: str, request_id: str | None, *, quick: bool = False
    ) -> None: ...

    def record_done(
        self, attempt_id: int, results: Sequence[ResultRecord], usage_images: int, *,
        quick: bool = False,
    ) -> None: ...  # fmt: skip

    def record_failed(self, attempt_id: int, code: str, message: str) -> None: ...

    def record_abandoned(self, attempt_id: int, reason: str) -> None: ...

    # -- queries -------------------------------------------------------------------------------

    def get(self, attempt_id: int) -> Attempt: ...

    def lookup_done(self, key: str) -> DoneEntry | None: ...

    def in_flight(self, key: str, *, max_age_s: float = ...) -> list[Attempt]: ...

    def unfinished(self) -> list[Attempt]: ...

    def attempts(
        self, step: str | None = None, key: str | None = None, *,
        state: AttemptState | None = None, recipe: str | None = None,
    ) -> list[Attempt]: ...  # fmt: skip

    def known_tasks(self, task_ids: Iterable[str]) -> set[str]: ...

    def cache_status(
        self, keys: Iterable[str], *, max_age_s: float = ...
    ) -> dict[str, CacheState]: ...

    def stats(self) -> JournalStats: ...

    # -- maintenance ---------------------------------------------------------------------------

    def gc(self, keep_keys: Iterable[str], *, min_blob_age_s: float = ...) -> GcReport: ...

    def clear(self, *, include_unfinished: bool = False) -> GcReport: ...

    # -- liveness and seeds --------------------------------------------------------------------

    def heartbeat(self) -> None: ...

    def sign_off(self) -> None: ...

    def owner_seen(self, host: str, pid: int) -> float | None: ...

    def owner_live(self, attempt: Attempt) -> bool: ...

    def take_over(self, attempt: Attempt) -> Attempt | None: ...

    def claim_seed(self, *, recipe: str, step: str, identity: str, seed: int) -> int: ...

    def close(self) -> None: ...


#: The operations by name (the contract test checks both journals offer exactly these).
OPERATIONS = frozenset(
    name for name in vars(JournalOps) if not name.startswith("_") and name not in ("blobs",)
)
