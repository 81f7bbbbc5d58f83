"""Liveness is a heartbeat (#13): a worker killed with SIGKILL right after its submit was
journalled leaves an orphan. A worker on another "host" (``WANRECIPE_HOST``: no pid check can
reach the first) waits while the dead worker's heartbeat is fresh, takes the attempt over once
it is older than the TTL, and re-attaches to the task: the emulator sees one submit in all.
Run on both journals: a shared state directory (SQLite) and Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.store import BlobStore, Journal
from wanrecipe.store.pg_journal import PostgresJournal

RECIPE = """\
version: 1
name: orphan
steps:
  a: {function: description_edit, image: in.png, prompt: brighter, parameters: {seed: 1}}
"""
TTL = "3s"


def _env(host: str, local: Path) -> dict[str, str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    for name in ("DASHSCOPE_API_KEY", "WANRECIPE_BACKEND", "WANRECIPE_STATE"):
        env.pop(name, None)
    env.update(
        WANRECIPE_HOST=host, WANRECIPE_HEARTBEAT_TTL=TTL, WANRECIPE_STATE_DIR=str(local)
    )  # fmt: skip
    return env


def _worker(
    recipe: Path, emu: EmulatorThread, out: Path, state: str, host: str, local: Path
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "wanrecipe", "run", str(recipe), "--base-url", emu.base_url,
        "--out", str(out), "--state", state, "--json",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, env=_env(host, local), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_survivor_takes_a_killed_workers_orphan_over_after_the_ttl(
    tmp_path: Path, request: pytest.FixtureRequest, dialect: str
) -> None:
    Image.new("RGB", (512, 512), (90, 120, 150)).save(tmp_path / "in.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    state = str(tmp_path / "shared") if dialect == "sqlite" else request.getfixturevalue("pg_url")
    config = EmulatorConfig(latency=4.0, engine_time_budget=0.1)
    with EmulatorThread(config) as emu:
        first = _worker(recipe, emu, tmp_path / "out1", state, "host-a", tmp_path / "local-a")
        assert first.stdout is not None
        for line in first.stdout:  # the task id is journalled before this event
            event = json.loads(line)
            if event.get("step") == "a" and event.get("state") == "submitted":
                break
        else:
            pytest.fail(first.communicate()[1][-2000:])
        first.kill()  # SIGKILL: no sign-off, no abandon, its heartbeat just stops
        first.communicate(timeout=30)
        second = _worker(recipe, emu, tmp_path / "out2", state, "host-b", tmp_path / "local-b")
        _out, err = second.communicate(timeout=180)
        stats = emu.stats()
    assert second.returncode == 0, err[-3000:]
    assert stats["submissions"]["accepted"] == 1, "the orphan's task was submitted again"
    record = json.loads((tmp_path / "out2" / "run.json").read_text())
    step = record["steps"]["a"]
    assert step["state"] == "done" and [a["reattached"] for a in step["attempts"]] == [True]
    assert any("host-a" in w and "takes it over" in w for w in record["warnings"]), record[
        "warnings"
    ]
    blobs = BlobStore(tmp_path / "probe")
    journal = (
        Journal(Path(state) / "state.db", blobs)
        if dialect == "sqlite"
        else PostgresJournal(state, blobs)
    )
    with journal:
        attempts = journal.attempts()
        seen = journal.owner_seen("host-a", first.pid)  # never signed off: it was killed
    assert [(a.state, a.owner_host) for a in attempts] == [("done", "host-b")]
    assert attempts[0].task_id == step["attempts"][0]["task_id"]
    # Taken over only once the dead worker's last heartbeat was older than the TTL (on the
    # journal's clock), however slow the machine.
    assert seen is not None and attempts[0].finished_at is not None
    assert attempts[0].finished_at > seen + 3.0
