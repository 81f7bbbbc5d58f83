"""Accounts: the emulator keeps quota, tasks and counters per API key, as the service does.

An account is created the first time its key is seen. Its name in the task list and in the
stats is a hash of the key (``key_id``), never the key. Each account has the configured quota
for itself (submissions per second, tasks running at once, queries per second): two keys run
side by side, each at its own quota; two teammates using one key share one.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import EmulatorConfig
from .quota import TokenBucket
from .stats import Stats

if TYPE_CHECKING:
    from .tasks import Task


def key_id(api_key: str) -> str:
    """The account's public name: a hash of its key (the task list's ``api_key_id``)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass
class Account:
    id: str
    submit_bucket: TokenBucket
    query_bucket: TokenBucket
    stats: Stats = field(default_factory=Stats)
    #: Submitted tasks waiting for one of the account's running slots, in order.
    queue: deque[Task] = field(default_factory=deque)


class Accounts:
    """Every account seen so far, by key hash."""

    def __init__(self, config: EmulatorConfig, started: float) -> None:
        self.config = config
        #: The server's start (monotonic): every account's times count from it, as the totals'.
        self.started = started
        self._by_id: dict[str, Account] = {}

    def of(self, api_key: str) -> Account:
        """The key's account, created on first use."""
        name = key_id(api_key)
        account = self._by_id.get(name)
        if account is None:
            cfg = self.config
            account = Account(
                id=name,
                submit_bucket=TokenBucket(cfg.rps, cfg.rps_burst, cfg.rate_grace),
                query_bucket=TokenBucket(cfg.query_qps, max(1.0, cfg.query_qps)),
                stats=Stats(started=self.started),
            )
            self._by_id[name] = account
        return account

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._by_id.values()))
