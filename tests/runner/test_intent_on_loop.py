"""The intent is written on the event loop only where that never waits: with another writer
holding the journal, it goes to a thread and waits there, and the run goes on."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from wanrecipe.api import load_recipe
from wanrecipe.runner import BackendChoice, execute
from wanrecipe.store import StateDir

from .conftest import fast_options

ONE = """\
    version: 1
    name: one
    steps:
      a: {function: colorization, image: in.png, prompt: "a blue sky", parameters: {seed: 7}}
"""


async def test_an_intent_waits_for_another_writer_off_the_loop(
    emulator, recipe_file, tmp_path: Path
) -> None:
    path = recipe_file(ONE)
    state = tmp_path / "state"
    # The schema exists and the seed is given: the run's first journal write is its intent.
    StateDir.open(state).close()
    held, released_at = threading.Event(), [0.0]

    def other_writer() -> None:  # as another process would: a connection of its own
        conn = sqlite3.connect(state / "state.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(2.0)
        released_at[0] = time.monotonic()
        conn.execute("ROLLBACK")
        conn.close()

    submitted_at: list[float] = []

    def on_event(event) -> None:
        if event.kind == "step" and event.state == "submitted":
            submitted_at.append(time.monotonic())

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert held.wait(10)
    try:
        async with emulator() as emu:
            record = await execute(
                load_recipe(path), backend=BackendChoice("url", emu.base_url),
                run_dir=tmp_path / "run", options=fast_options(), state_dir=state,
                on_event=on_event,
            )  # fmt: skip
            stats = emu.stats()
    finally:
        writer.join()
    assert record.status == "ok", record.steps["a"].error
    assert stats["submissions"]["accepted"] == 1
    # Nothing was submitted before the intent was durable, and it could not be written
    # while the other writer held the journal.
    assert len(submitted_at) == 1 and submitted_at[0] > released_at[0]
    with StateDir.open(state) as sd:
        assert [a.state for a in sd.journal.unfinished()] == []
        assert sd.journal.lookup_done(record.steps["a"].key) is not None
