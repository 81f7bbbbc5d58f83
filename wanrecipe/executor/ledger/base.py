"""The ledger's interface, its answer, and the in-process ledger.

The client-side :class:`~wanrecipe.executor.quota.QuotaGate` keeps one process inside the
quota. A ledger keeps *several* processes inside it together: before a task takes a running
slot, or a submit goes out, the process asks the ledger, which answers with an explicit
:class:`Answer` (granted, or not granted and how long to wait). Every method is one short
transaction and the answer says "granted" explicitly, never by a wait of zero (the classic
bug: a computed wait <= 0 taken as a grant that was never recorded).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..quota import Quota, window_for

#: No answer ever says "wait 0": a refusal always waits at least this long (seconds).
MIN_WAIT_S = 0.005
#: How often a process asks again for a slot another process holds (it cannot be told).
SLOT_POLL_S = 0.1
DEFAULT_LEASE_S = 6.0


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
    """One account's quota, shared. Every method is short and thread-safe.

    ``renew`` is best effort (a beat lost to a database blip is retried by the next one);
    ``watch`` registers a callback, called from any thread, when a slot or a submission
    may have been freed (ledgers that cannot be told call it only for their own releases).

    ``quick``: the four quota operations never wait (no network round trip, no lock held
    by anyone else: a ledger that would have to wait refuses for a few ms instead, and a
    release it cannot record at once it records from a thread of its own). The gate then
    calls them on the event loop itself, with no thread hand-off. A ledger that talks to
    a server is not quick: its calls go to a worker thread.
    """

    quick: bool

    def try_slot(self) -> Answer: ...
    def release_slot(self, lease: str) -> None: ...
    def try_submit(self) -> Answer: ...
    def submit_done(self, lease: str) -> None: ...
    def renew(self) -> None: ...
    def watch(self, callback: Callable[[], None]) -> None: ...
    def close(self) -> None: ...


def account_id(base_url: str, api_key: str) -> str:
    """Which account a quota belongs to: a hash of the key and the service, never the key."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()
    return digest[:24]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_owner() -> str:
    """This ledger's name in a lease table: ``host:pid:random`` (readable, never reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Watchers:
    """The callbacks of :meth:`QuotaLedger.watch`."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def fire(self) -> None:
        for callback in list(self._callbacks):
            callback()


class InProcessLedger:
    """The quota of one process, as a ledger (tests, and several schedulers in one process)."""

    quick = True  # a lock held for a few dict operations

    def __init__(self, quota: Quota, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.quota = quota
        self._clock = clock
        self._capacity, window = window_for(quota.submit_rps)
        self._window = window + quota.margin
        self._lock = threading.Lock()
        self._slots: set[str] = set()
        self._submits: dict[str, float | None] = {}  # lease -> release time (None: in flight)
        self._watchers = Watchers()

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
        self._watchers.fire()

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
        self._watchers.fire()

    def renew(self) -> None:
        pass  # nothing expires in one process

    def watch(self, callback: Callable[[], None]) -> None:
        self._watchers.add(callback)

    def close(self) -> None:
        pass
