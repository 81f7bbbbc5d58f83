"""Fault injection: a SPEC string parsed into rules, decided deterministically by seed.

SPEC is a comma-separated list of ``KIND=AMOUNT`` rules. AMOUNT is a probability
(``0.1`` or ``10%``) or ``first:N`` (the first N events at that point). Example:
``submit.429=first:2,query.503=0.2,task.timeout=10%``.

Each point (submit, query, task, output, download) numbers its events 0, 1, 2, ...; a rule
fires on event k when ``first:N`` and k < N, or when a hash of (seed, kind, k) falls under the
probability. So the same seed and the same order of requests always give the same faults,
whatever else happens in between. When several rules of one point fire on the same event the
first in SPEC order wins.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Final

from ..errors import UsageError

#: kind -> what it does (for --help and the docs).
FAULT_KINDS: Final[dict[str, str]] = {
    "submit.429": "submit answers 429 Throttling.RateQuota (no task is created)",
    "submit.500": "submit answers 500 InternalError (no task is created)",
    "submit.drop": "submit connection is closed before any task is created",
    "submit.lost": "task IS created (and bills), then the connection closes unanswered",
    "query.500": "task query answers 500 InternalError (the SDK gives up)",
    "query.503": "task query answers 503 ServiceUnavailable (the SDK retries)",
    "query.504": "task query answers 504 GatewayTimeout (the SDK retries)",
    "task.error": "task ends FAILED with InternalError",
    "task.timeout": "task ends FAILED with InternalError.Timeout",
    "task.inspection": "task ends FAILED with DataInspectionFailed",
    "output.timeout": "one output fails with InternalError.Timeout (partial success)",
    "download.500": "result download answers 500",
    "download.expired": "result download answers 403 as if the URL had expired",
}

POINTS: Final = ("submit", "query", "task", "output", "download")

#: task-level fault kind -> the FAILED task's error code.
TASK_FAULT_CODES: Final[dict[str, str]] = {
    "task.error": "InternalError",
    "task.timeout": "InternalError.Timeout",
    "task.inspection": "DataInspectionFailed",
}


@dataclass(frozen=True)
class FaultRule:
    kind: str
    probability: float = 0.0
    first: int = 0

    @property
    def point(self) -> str:
        return self.kind.split(".", 1)[0]

    def fires(self, seed: int, index: int) -> bool:
        if self.first:
            return index < self.first
        digest = hashlib.sha256(f"{seed}:{self.kind}:{index}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.probability


def parse_faults(spec: str) -> tuple[FaultRule, ...]:
    """Parse a SPEC string (see the module docstring). Raises UsageError with the bad part."""
    rules = []
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        kind, sep, amount = (s.strip() for s in part.partition("="))
        if not sep:
            raise UsageError(f"fault {part!r}: expected KIND=AMOUNT, e.g. query.503=0.2")
        if kind not in FAULT_KINDS:
            known = ", ".join(FAULT_KINDS)
            raise UsageError(f"fault {part!r}: unknown kind {kind!r} (known: {known})")
        rules.append(_rule(kind, amount, part))
    return tuple(rules)


def _rule(kind: str, amount: str, part: str) -> FaultRule:
    if amount.startswith("first:"):
        try:
            n = int(amount[len("first:") :])
        except ValueError:
            n = -1
        if n < 1:
            raise UsageError(f"fault {part!r}: first:N needs a whole number N >= 1")
        return FaultRule(kind, first=n)
    try:
        p = float(amount[:-1]) / 100 if amount.endswith("%") else float(amount)
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise UsageError(f"fault {part!r}: amount must be a probability (0.1 or 10%) or first:N")
    return FaultRule(kind, probability=p)


class FaultInjector:
    """Counts events per point and says which fault, if any, hits the next one."""

    def __init__(self, rules: tuple[FaultRule, ...], seed: int) -> None:
        self._seed = seed
        self._rules: dict[str, tuple[FaultRule, ...]] = {
            point: tuple(r for r in rules if r.point == point) for point in POINTS
        }
        self._events: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    def pick(self, point: str) -> str | None:
        """Number the next event at ``point`` and return the fault kind to apply, or None."""
        index = self._events[point]
        self._events[point] += 1
        for rule in self._rules[point]:
            if rule.fires(self._seed, index):
                self.injected[rule.kind] += 1
                return rule.kind
        return None

    def active(self, point: str) -> bool:
        return bool(self._rules[point])


def spec_help() -> str:
    """The SPEC syntax for ``wanrecipe serve --help`` and the docs."""
    lines = [
        "SPEC is KIND=AMOUNT[,KIND=AMOUNT...]; AMOUNT is a probability (0.1 or 10%) or",
        "first:N (the first N events of that kind's point). Decisions are deterministic",
        "given --fault-seed and the order of requests. Kinds:",
    ]
    lines += [f"  {kind:<17} {what}" for kind, what in FAULT_KINDS.items()]
    return "\n".join(lines)
