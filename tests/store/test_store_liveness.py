"""Schema v2: heartbeats (is another run's owner still working?), claimed seeds, migration."""

from __future__ import annotations

import os
import socket
import sqlite3
from dataclasses import replace
from pathlib import Path

from wanrecipe.store import BlobStore, Journal, content_key
from wanrecipe.store.journal import SCHEMA_VERSION
from wanrecipe.store.liveness import HEARTBEAT_STALE_S

from .test_store_journal import Clock


def _journal(tmp_path: Path, clock: Clock) -> Journal:
    return Journal(tmp_path / "state.db", BlobStore(tmp_path / "objects"), clock=clock)


def _key() -> str:
    return content_key(
        model="wanx2.1-imageedit", function="colorization", prompt="p",
        parameters={"seed": 1}, inputs={},
    )  # fmt: skip


def test_a_live_owner_elsewhere_is_known_by_its_heartbeat(tmp_path: Path) -> None:
    clock = Clock()
    with _journal(tmp_path, clock) as j:
        aid = j.record_intent(_key(), step="a", recipe="r", backend="b", request={}, seed=1)
        mine = j.get(aid)
        # As seen from another host: no pid check possible, only the heartbeat.
        elsewhere = replace(mine, owner_host="other-host")
        assert j.owner_live(elsewhere) is False  # never heard of
        with sqlite3.connect(tmp_path / "state.db") as db:
            db.execute(
                "INSERT INTO owners VALUES (?, ?, ?, ?)",
                ("other-host", mine.owner_pid, clock.now, clock.now),
            )
        assert j.owner_live(elsewhere) is True
        clock.now += HEARTBEAT_STALE_S + 1
        assert j.owner_live(elsewhere) is False  # gone quiet: taken for dead


def test_a_stale_heartbeat_overrules_a_live_pid(tmp_path: Path) -> None:
    clock = Clock()
    with _journal(tmp_path, clock) as j:
        aid = j.record_intent(_key(), step="a", recipe="r", backend="b", request={}, seed=1)
        j.heartbeat()
        attempt = j.get(aid)
        assert attempt.owner_host == socket.gethostname() and attempt.owner_pid == os.getpid()
        assert j.owner_live(attempt) is True
        clock.now += HEARTBEAT_STALE_S + 1  # a hung process (or a reused pid)
        assert j.owner_live(attempt) is False
        j.heartbeat()
        assert j.owner_live(attempt) is True
        j.sign_off()
        assert j.owner_seen(attempt.owner_host, attempt.owner_pid) is None
        assert j.owner_live(attempt) is True  # the pid check alone still says alive


def test_the_first_claimed_seed_wins(tmp_path: Path) -> None:
    clock = Clock()
    with _journal(tmp_path, clock) as one, _journal(tmp_path, clock) as two:
        assert one.claim_seed(recipe="r", step="a", identity="i", seed=11) == 11
        assert two.claim_seed(recipe="r", step="a", identity="i", seed=22) == 11
        assert two.claim_seed(recipe="r", step="a", identity="j", seed=22) == 22


def test_a_v1_state_dir_is_migrated_in_place(tmp_path: Path) -> None:
    clock = Clock()
    with _journal(tmp_path, clock) as j:
        aid = j.record_intent(_key(), step="a", recipe="r", backend="b", request={}, seed=1)
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("DROP TABLE owners")
        db.execute("DROP TABLE seeds")
        db.execute("PRAGMA user_version = 1")
    with _journal(tmp_path, clock) as j:
        assert j.get(aid).state == "intent"  # v1 data kept
        j.heartbeat()
        assert j.claim_seed(recipe="r", step="a", identity="i", seed=5) == 5
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
