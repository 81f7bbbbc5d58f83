"""The journal's writes are made on the event loop only where that never waits: with another
writer holding the journal (as another process would), the intent, and a finished task's done
mark, go to a thread and wait there, while the loop goes on serving the run."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
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

#: How long the other writer holds the journal; how long a ping of the loop may take.
HOLD_S, PING_S = 2.5, 1.0


class OtherWriter:
    """A connection of its own holding SQLite's write lock (``BEGIN IMMEDIATE``) for HOLD_S
    from ``start()`` on, pinging the run's event loop meanwhile: a loop that waited out the
    hold (SQLite's busy timeout, on the loop) leaves a ping unanswered until the release."""

    def __init__(self, db: Path) -> None:
        self.db, self.held, self.released = db, threading.Event(), threading.Event()
        self.released_at = 0.0
        self.pings = self.unanswered = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Called on the run's loop: returns once the lock is held."""
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._hold, args=(loop,))
        self._thread.start()
        assert self.held.wait(10)

    def _hold(self, loop: asyncio.AbstractEventLoop) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        self.held.set()
        end = time.monotonic() + HOLD_S
        while time.monotonic() < end - 0.1:
            answered = threading.Event()
            loop.call_soon_threadsafe(answered.set)
            self.pings += 1
            if not answered.wait(min(PING_S, max(0.0, end - time.monotonic()))):
                self.unanswered += 1
            time.sleep(0.1)
        self.released_at = time.monotonic()
        self.released.set()
        conn.execute("ROLLBACK")
        conn.close()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


async def _run(
    emulator: Callable[..., object],
    path: Path,
    state: Path,
    tmp_path: Path,
    writer: OtherWriter,
    on_event: Callable[[object], None],
) -> tuple[object, dict[str, object]]:
    try:
        async with emulator(latency=0.3) as emu:  # type: ignore[attr-defined]
            record = await execute(
                load_recipe(path), backend=BackendChoice("url", emu.base_url),
                run_dir=tmp_path / "run", options=fast_options(), state_dir=state,
                on_event=on_event,
            )  # fmt: skip
            return record, emu.stats()
    finally:
        writer.join()


async def test_an_intent_waits_for_another_writer_off_the_loop(
    emulator, recipe_file, tmp_path: Path
) -> None:
    path = recipe_file(ONE)
    state = tmp_path / "state"
    # The schema exists and the seed is given: the run's first journal write is its intent.
    StateDir.open(state).close()
    writer = OtherWriter(state / "state.db")
    submitted_at: list[float] = []

    def on_event(event) -> None:
        if event.kind == "step" and event.state == "submitted":
            submitted_at.append(time.monotonic())

    asyncio.get_running_loop().call_soon(writer.start)  # once the run has started
    record, stats = await _run(emulator, path, state, tmp_path, writer, on_event)
    assert record.status == "ok", record.steps["a"].error
    assert stats["submissions"]["accepted"] == 1
    # Nothing was submitted before the intent was durable, and it could not be written
    # while the other writer held the journal; the loop ran on meanwhile.
    assert len(submitted_at) == 1 and submitted_at[0] > writer.released_at
    assert writer.pings >= 5 and writer.unanswered == 0, (writer.pings, writer.unanswered)
    with StateDir.open(state) as sd:
        assert [a.state for a in sd.journal.unfinished()] == []
        assert sd.journal.lookup_done(record.steps["a"].key) is not None


async def test_a_done_mark_waits_for_another_writer_off_the_loop(
    emulator, recipe_file, tmp_path: Path
) -> None:
    """The other writer takes the journal as the download starts (the task submitted and
    its id noted): the download's blob is stored on the loop, its done mark waits in a
    thread."""
    path = recipe_file(ONE)
    state = tmp_path / "state"
    writer = OtherWriter(state / "state.db")
    order: list[str] = []

    def on_event(event) -> None:
        if event.kind != "step":
            return
        order.append(event.state)
        if event.state == "downloading":
            writer.start()  # blocks the loop until the lock is held: before the download
        elif event.state == "done":
            order.append("released" if writer.released.is_set() else "held")

    record, stats = await _run(emulator, path, state, tmp_path, writer, on_event)
    assert record.status == "ok", record.steps["a"].error
    assert stats["submissions"]["accepted"] == 1
    # The step was done only once its mark was written, after the other writer let go, and
    # the loop ran on while the mark waited.
    assert order.index("submitted") < order.index("downloading") < order.index("done")
    assert order[order.index("done") + 1] == "released"
    assert writer.pings >= 5 and writer.unanswered == 0, (writer.pings, writer.unanswered)
    with StateDir.open(state) as sd:
        assert [a.state for a in sd.journal.unfinished()] == []
        entry = sd.journal.lookup_done(record.steps["a"].key)
        assert entry is not None
        assert entry.attempt.task_id == record.steps["a"].attempts[-1].task_id
