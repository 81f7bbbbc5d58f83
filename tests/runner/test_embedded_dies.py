"""The embedded emulator's process killed mid-run (the OOM killer, a stray ``kill -9``): the
run stops at once and says why, instead of retrying a dead server until each step's timeout;
what was done before stays stored."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from wanrecipe.api import load_recipe
from wanrecipe.runner import BackendChoice, execute
from wanrecipe.store import StateDir

from .conftest import fast_options

TWO = """\
    version: 1
    name: two
    steps:
      a: {function: colorization, image: in.png, prompt: "a blue sky", parameters: {seed: 3}}
      b:
        function: super_resolution
        image: "{{ steps.a.image }}"
        prompt: sharper
        parameters: {seed: 3, upscale_factor: 2}
"""


def _emulator_children() -> list[int]:
    """This process's embedded emulators: children running ``wanrecipe.emulator.child``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == os.getpid() and b"wanrecipe.emulator.child" in cmdline:
            found.append(int(entry.name))
    return found


async def test_a_killed_embedded_emulator_stops_the_run_saying_why(
    recipe_file, tmp_path: Path
) -> None:
    path = recipe_file(TWO)
    killed: list[int] = []

    def on_event(event) -> None:
        # Step b in flight on the emulator: a's image is done and stored.
        if event.kind == "step" and event.step == "b" and event.state == "submitted":
            for pid in _emulator_children():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    run = execute(
        load_recipe(path), backend=BackendChoice("local"), run_dir=tmp_path / "run",
        options=fast_options(), state_dir=tmp_path / "state", on_event=on_event,
    )  # fmt: skip
    # Bounded only so that a regression fails instead of hanging for the step's timeout.
    record = await asyncio.wait_for(run, 120)
    assert len(killed) == 1
    assert record.status == "interrupted"
    why = [w for w in record.warnings if "embedded emulator's process ended mid-run" in w]
    assert why and "killed by SIGKILL" in why[0], record.warnings
    assert record.steps["a"].state == "done"
    assert record.steps["b"].state == "failed"
    assert record.steps["b"].error is not None
    assert "embedded emulator" in record.steps["b"].error.message
    with StateDir.open(tmp_path / "state") as sd:  # a's paid image is kept
        assert sd.journal.lookup_done(record.steps["a"].key) is not None
