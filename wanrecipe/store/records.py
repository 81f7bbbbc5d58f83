"""What the journal stores and answers, whichever database holds it: the attempt states and
the transitions between them, the records, and the two refusals (``InvalidTransition``,
``KeyBusy``). No SQL here: see ``policy.py`` (the rules) and ``sql/*.sql`` (the dialects)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..errors import StoreError

AttemptState = Literal["intent", "submitted", "done", "failed", "abandoned"]
CacheVerdict = Literal["cached", "reattach", "dangling", "miss"]

#: A task id (and its result URLs) lives 24 h at the service: an older attempt has nothing left
#: to re-attach to.
DEFAULT_MAX_AGE_S: Final = 24 * 3600.0
#: Live attempts: at most one per content key (a partial unique index in either database).
UNFINISHED: Final = ("intent", "submitted")
FINISHED: Final = ("done", "failed", "abandoned")

# Which states each transition may start from. done -> done is handled as a no-op (two runs that
# re-attached to the same task both finish it); abandoned -> submitted/done/failed lets a later
# reconciliation record what became of a task we had given up on.
TRANSITIONS: Final[dict[str, tuple[str, ...]]] = {
    "submitted": ("intent", "abandoned"),
    "done": ("submitted", "abandoned"),
    "failed": ("intent", "submitted", "abandoned"),
    "abandoned": ("intent", "submitted"),
}


def worker_host() -> str:
    """The name this machine records as the owner of its attempts and heartbeats:
    ``WANRECIPE_HOST``, else the host name. Set it where machines share a host name (some
    container set-ups): two workers that claim one name and pid could not be told apart."""
    return os.environ.get("WANRECIPE_HOST") or socket.gethostname()


class InvalidTransition(StoreError):
    """An attempt was asked to move to a state its current state does not allow."""


class WouldWait(Exception):
    """A ``quick`` write found the database taken by another writer (a thread of this process
    or another process) and wrote nothing: make the same write again where waiting is fine."""


class KeyBusy(StoreError):
    """The key is taken: a live attempt holds it (the database's one-live-attempt-per-key
    index refused the claim), or, for ``record_intent(exclusive=True)``, it is done with all
    its blobs.

    ``attempts`` are the blockers: look the key up again (``lookup_done``, ``in_flight``) and
    reuse or re-attach instead of submitting.
    """

    def __init__(self, key: str, attempts: tuple[Attempt, ...]) -> None:
        self.key = key
        self.attempts = attempts
        what = ", ".join(f"attempt {a.id} ({a.state}, pid {a.owner_pid})" for a in attempts)
        super().__init__(f"key {key[:12]} is already taken: {what}")


@dataclass(frozen=True)
class ResultRecord:
    """One output image of a done attempt; its bytes are the blob ``sha256``."""

    index: int
    sha256: str
    size: int
    width: int | None = None
    height: int | None = None
    url_redacted: str | None = None


@dataclass(frozen=True)
class Attempt:
    id: int
    key: str
    step: str
    recipe: str
    backend: str
    request: dict[str, Any]
    seed: int
    state: AttemptState
    task_id: str | None
    request_id: str | None
    created_at: float
    submitted_at: float | None
    finished_at: float | None
    usage_images: int | None
    error_code: str | None
    error_message: str | None
    owner_host: str
    owner_pid: int
    results: tuple[ResultRecord, ...] = ()

    @property
    def dangling(self) -> bool:
        """Intent recorded but no task id: the submit may or may not have reached the service."""
        return self.state == "intent"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def owner_alive(self) -> bool | None:
        """Whether the process that recorded this attempt still runs; None when unknowable.

        A pid can be reused, so True means "maybe"; False is reliable on the same host.
        """
        if self.owner_host != worker_host():
            return None
        if self.owner_pid == os.getpid():
            return True
        try:
            os.kill(self.owner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OSError:
            return None
        return True


@dataclass(frozen=True)
class DoneEntry:
    """A cache hit: the done attempt and its results, every blob present in the store."""

    attempt: Attempt

    @property
    def results(self) -> tuple[ResultRecord, ...]:
        return self.attempt.results

    @property
    def sha256s(self) -> tuple[str, ...]:
        return tuple(r.sha256 for r in self.attempt.results)


@dataclass(frozen=True)
class CacheState:
    """What ``plan`` shows for a key: cached, re-attach, dangling (may be billed) or will run."""

    key: str
    status: CacheVerdict
    done: DoneEntry | None = None
    in_flight: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class GcReport:
    attempts_removed: int
    blobs_removed: int
    bytes_freed: int


@dataclass(frozen=True)
class JournalStats:
    attempts_by_state: dict[str, int]
    keys_cached: int
    blobs: int
    blob_bytes: int
