"""Running slots handed out by priority: the ready step with the longest chain behind it goes
first, then the declared order (the plan's wall-time estimate assumes the same).

The quota gate's own slots are FIFO; this puts one step at a time in that line, the best one
waiting. Until every step that is ready at the start has queued (or left), nobody goes: the
first submits follow priority, not the order in which input files happened to be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import AsyncIterator, Iterable
from typing import Any

from .quota import QuotaGate


def priorities(recipe: Any) -> dict[str, tuple[int, int]]:
    """Sort key per step: longest chain of dependants first, then declared order."""
    chain: dict[str, int] = {}
    for level in reversed(recipe.levels()):
        for sid in level:
            chain[sid] = 1 + max((chain[d] for d in recipe.dependents(sid)), default=0)
    return {s.id: (-chain[s.id], i) for i, s in enumerate(recipe.steps)}


class PrioritySlots:
    def __init__(
        self, gate: QuotaGate, priority: dict[str, tuple[int, int]], starters: Iterable[str]
    ) -> None:
        self.gate = gate
        self._priority = priority
        self._queue: list[tuple[tuple[int, int], asyncio.Future[None]]] = []
        self._starters = set(starters)
        # Closed until the starters have queued or left.
        self._turn_taken = bool(self._starters)

    @contextlib.asynccontextmanager
    async def slot(self, sid: str) -> AsyncIterator[None]:
        """Hold a running slot; steps waiting for one get it in priority order."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (self._priority[sid], turn))
        self.left(sid)
        if not self._turn_taken:
            self._release_turn()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release_turn()
            raise
        holding_turn = True
        try:
            async with self.gate.slot():
                self._release_turn()
                holding_turn = False
                yield
        finally:
            if holding_turn:
                self._release_turn()

    def left(self, sid: str) -> None:
        """``sid`` no longer counts as a starter (it queued, or finished without a slot)."""
        if sid in self._starters:
            self._starters.discard(sid)
            if not self._starters:
                self._release_turn()

    def _release_turn(self) -> None:
        self._turn_taken = False
        while self._queue:
            _, turn = heapq.heappop(self._queue)
            if not turn.done():
                turn.set_result(None)
                self._turn_taken = True
                return
