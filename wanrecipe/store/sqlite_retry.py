"""Waiting out SQLite's "database is locked" where its own busy handler does not (switching a
fresh file to WAL) or must not (a connection that never blocks its caller), and taking a
write lock without waiting at all (``begin_now``: writes made on the event loop)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def until_unlocked(
    fn: Callable[[], T], *, within_s: float, pause_s: float = 0.001, max_pause_s: float = 0.1
) -> T:
    """``fn()``, called again while SQLite says the file is locked, for up to ``within_s``
    (the pause doubles from ``pause_s`` to ``max_pause_s``); then the last error."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, max_pause_s)


def enter_wal(conn: sqlite3.Connection, *, within_s: float) -> str:
    """Switch a fresh file to WAL; returns the journal mode. The switch needs the file to
    itself, and SQLite answers "database is locked" at once, without its busy handler, while
    another process opens the same fresh file: so retry, within ``within_s``."""
    return until_unlocked(
        lambda: str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]),
        within_s=within_s,
        pause_s=0.005,
    )


def begin_now(conn: sqlite3.Connection, busy: Callable[[], BaseException]) -> None:
    """``BEGIN IMMEDIATE`` on ``conn`` (whose busy timeout must be 0) without waiting: raise
    ``busy()``, nothing begun, while another connection holds the file's write lock."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_locked(exc):
            raise busy() from None
        raise
