"""QuotaLedger: the account's quota shared by every run that uses the account.

- :mod:`.base`: the interface, its :class:`Answer`, :class:`InProcessLedger`;
- :mod:`.statedir`: :class:`StateDirLedger` (processes on one machine, an SQLite file);
- :mod:`.postgres`: the Postgres ledger (many machines; imported only for a
  ``postgresql://`` state, psycopg is optional);
- :mod:`.gate`: :class:`LedgerGate` (the asyncio side) and :func:`open_gate`.
"""

from __future__ import annotations

from .base import (
    DEFAULT_LEASE_S,
    MIN_WAIT_S,
    SLOT_POLL_S,
    Answer,
    InProcessLedger,
    QuotaLedger,
    account_id,
)
from .gate import LedgerGate, close_gate, ledger_home, open_gate
from .statedir import LEDGER_FILE, StateDirLedger

__all__ = [
    "DEFAULT_LEASE_S",
    "LEDGER_FILE",
    "MIN_WAIT_S",
    "SLOT_POLL_S",
    "Answer",
    "InProcessLedger",
    "LedgerGate",
    "QuotaLedger",
    "StateDirLedger",
    "account_id",
    "close_gate",
    "ledger_home",
    "open_gate",
]
