"""LedgerGate: the asyncio side of a ledger, and ``open_gate``, which picks the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from ..quota import Quota, QuotaGate
from .base import DEFAULT_LEASE_S, Answer, QuotaLedger, account_id

#: How many tasks in a row one slot lease may serve before it goes back to the ledger.
HANDOVERS = 4
#: How long a handed-over slot lease waits for the next task before it goes back (seconds).
HANDOVER_S = 0.05

#: State URLs whose ledger is the Postgres one.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class LedgerGate(QuotaGate):
    """A QuotaGate whose slots and submissions are also granted by a ledger.

    The process's own FIFO gate is taken first (so only holders talk to the ledger); then the
    ledger is asked until it grants. A refused waiter sleeps until the wait the ledger named
    or until the ledger says something was freed, whichever comes first: a release in this
    process wakes it at once, as does another process's release when the ledger can be told
    (Postgres: LISTEN/NOTIFY); otherwise it is seen within the named wait. While anything is
    held, a heartbeat renews this process's leases.

    **Hand-over.** A task that ends while another task of this process waits for a slot hands
    its slot lease straight on: no release and no new grant, so the slot never goes back to
    the ledger between two of this process's tasks (two transactions saved per task, and on
    Postgres two round trips between a task's end and the next submit). A lease is handed on
    at most ``handovers`` times, then given back, so other processes on the account get
    their turn. A handed-over lease nobody took within ``HANDOVER_S`` goes back. The ledger
    keeps counting it as this process's slot throughout: never over quota.
    """

    def __init__(
        self,
        quota: Quota,
        ledger: QuotaLedger,
        *,
        heartbeat_s: float = DEFAULT_LEASE_S / 3,
        clock: Callable[[], float] = time.monotonic,
        handovers: int = HANDOVERS,
    ) -> None:
        super().__init__(quota, clock=clock)
        self.ledger = ledger
        self.heartbeat_s = heartbeat_s
        self.handovers = handovers
        #: Slot leases handed on by a task that ended, for the next one: (lease, times used).
        self._spare: list[tuple[str, int]] = []
        #: How many slots were handed over without the ledger (tests and stats).
        self.handed_over = 0
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held = 0
        self._heartbeat: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        #: How many times a refusal was answered (tests and stats).
        self.refusals = 0
        #: How many refused waits ended by a wake-up rather than their timeout.
        self.woken = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with super().slot():
            if self._spare:
                lease, uses = self._spare.pop()
                self.handed_over += 1
            else:
                lease, uses = await self._acquire(self.ledger.try_slot, self.ledger.release_slot), 0
            self._held += 1
            self._ensure_heartbeat()
            try:
                yield
            finally:
                self._held -= 1
                if uses + 1 < self.handovers and self._slots.waiting:
                    # The waiter first in line gets this process's next permit as we leave.
                    self._spare.append((lease, uses + 1))
                    asyncio.get_running_loop().call_later(HANDOVER_S, self._give_back_spare, lease)
                else:
                    await self._give_back(self.ledger.release_slot, lease)

    def _give_back_spare(self, lease: str) -> None:
        for i, (spare, _) in enumerate(self._spare):
            if spare == lease:
                del self._spare[i]
                # A timer callback cannot await: the release runs as a task (aclose waits).
                task = asyncio.get_running_loop().create_task(
                    self._give_back(self.ledger.release_slot, lease)
                )
                self._releasing.add(task)
                task.add_done_callback(self._releasing.discard)
                return

    async def _give_back(self, give_back: Callable[[str], None], lease: str) -> None:
        if self.ledger.quick:
            give_back(lease)  # never waits (see QuotaLedger.quick)
        else:
            await asyncio.shield(asyncio.to_thread(give_back, lease))
        self._wake()

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
            lease = await self._acquire(ask, give_back)
            self._held += 1
            self._ensure_heartbeat()
            try:
                yield
            finally:
                self._held -= 1
                await self._give_back(give_back, lease)

    async def _acquire(self, ask: Callable[[], Answer], give_back: Callable[[str], None]) -> str:
        self._listen()
        while True:
            # Registered before asking: a release between the answer and the sleep still wakes.
            woken = asyncio.Event()
            self._waiters.add(woken)
            try:
                answer = await self._ask(ask, give_back)
                if answer.granted:
                    assert answer.lease is not None
                    return answer.lease
                self.refusals += 1
                try:
                    await asyncio.wait_for(woken.wait(), answer.wait_s)
                    self.woken += 1
                except TimeoutError:
                    pass
            finally:
                self._waiters.discard(woken)

    async def _ask(self, ask: Callable[[], Answer], give_back: Callable[[str], None]) -> Answer:
        """One question to the ledger: on the loop for a quick ledger, else in a thread; a
        grant that arrives after the asker was cancelled is handed straight back (it would
        otherwise hold a slot until its lease ran out)."""
        if self.ledger.quick:
            return ask()
        pending = asyncio.ensure_future(asyncio.to_thread(ask))
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:

            def undo(done: asyncio.Future[Answer]) -> None:
                if done.cancelled() or done.exception() is not None:
                    return
                answer = done.result()
                if answer.granted and answer.lease is not None:
                    asyncio.get_running_loop().run_in_executor(None, give_back, answer.lease)

            pending.add_done_callback(undo)
            raise

    def _listen(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self.ledger.watch(self._wake_threadsafe)

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for event in self._waiters:
            event.set()

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(), name="quota-heartbeat"
            )

    async def _beat(self) -> None:
        while self._held > 0:
            await asyncio.sleep(self.heartbeat_s)
            await asyncio.to_thread(self.ledger.renew)

    async def aclose(self) -> None:
        while self._spare:
            lease, _ = self._spare.pop()
            await self._give_back(self.ledger.release_slot, lease)
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await asyncio.to_thread(self.ledger.close)


def ledger_home(state: Any) -> Path | str:
    """Where an open state keeps the account's quota: its Postgres database when the state
    is one (``--state postgresql://...``: every machine on it shares the quota), else its
    state directory (the processes of this machine). ``state.spec`` is what ``--state``
    named; its URL (which may hold a password) only ever goes to the connection."""
    spec = getattr(state, "spec", None)
    if getattr(spec, "kind", None) == "postgres":
        url = getattr(spec, "url", None)
        if not isinstance(url, str) or not url.strip().startswith(POSTGRES_SCHEMES):
            # Never fall back to this machine's ledger: N machines would each use the quota.
            raise RuntimeError("a Postgres state without its URL: cannot share the quota")
        return url.strip()
    return Path(state.path)


def open_ledger(
    quota: Quota, shared_in: Path | str, account: str, *, lease_s: float = DEFAULT_LEASE_S
) -> QuotaLedger:
    """The ledger of the state ``shared_in``: a ``postgresql://`` URL (many machines) or a
    state directory (the processes of one machine)."""
    if isinstance(shared_in, str) and shared_in.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresLedger

        return PostgresLedger(shared_in, quota, account, lease_s=lease_s)
    from .statedir import StateDirLedger

    return StateDirLedger(Path(shared_in), quota, account, lease_s=lease_s)


def open_gate(
    quota: Quota,
    *,
    shared_in: Path | str | None,
    base_url: str = "",
    api_key: str = "",
    lease_s: float = DEFAULT_LEASE_S,
) -> QuotaGate:
    """The gate for a run: shared through the state ``shared_in`` when given (a state
    directory or a ``postgresql://`` URL; a service other runs may use too), else this
    process's own."""
    if shared_in is None:
        return QuotaGate(quota)
    ledger = open_ledger(quota, shared_in, account_id(base_url, api_key), lease_s=lease_s)
    return LedgerGate(quota, ledger, heartbeat_s=lease_s / 3)


async def close_gate(gate: QuotaGate) -> None:
    if isinstance(gate, LedgerGate):
        await gate.aclose()
