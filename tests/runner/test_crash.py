"""Never pay twice, never lose a paid image: `wanrecipe run` killed with SIGKILL at random
moments, then run again, against one real emulator over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from wanrecipe import wire
from wanrecipe.api import load_recipe
from wanrecipe.emulator.app import EMULATOR
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.runner import BackendChoice, execute

from .conftest import fast_options, make_image
from .test_cli_run import ENV

#: A chain (a -> b -> d) and a branch (a -> c); every prompt names its cycle, so the
#: emulator's tasks tell which cycle and step they belong to.
RECIPE = """\
version: 1
name: crash{cycle}
steps:
  a: {{function: colorization, image: in.png, prompt: "c{cycle} a"}}
  b: {{function: super_resolution, image: "{{{{ steps.a.image }}}}", prompt: "c{cycle} b",
      parameters: {{upscale_factor: 2}}}}
  c: {{function: colorization, image: "{{{{ steps.a.image }}}}", prompt: "c{cycle} c"}}
  d: {{function: colorization, image: "{{{{ steps.b.image }}}}", prompt: "c{cycle} d"}}
"""
STEPS = ("a", "b", "c", "d")
#: 30 kill/re-run cycles in all, in 3 tests of 10 (each with its own emulator and state dir),
#: so that the suite's workers share them out.
CHUNKS = 3
CYCLES = 10


def accepted_by_prompt(emu: EmulatorThread) -> Counter[str]:
    """Accepted submissions (tasks the service created and would bill) per prompt."""

    async def snap() -> Counter[str]:
        tasks = emu._emu.app[EMULATOR].manager.tasks.values()
        return Counter(t.request.prompt for t in tasks)

    assert emu._loop is not None
    return asyncio.run_coroutine_threadsafe(snap(), emu._loop).result(timeout=10)


def command(recipe: Path, emu: EmulatorThread, out: Path, state: Path) -> list[str]:
    return [
        sys.executable, "-m", "wanrecipe", "run", str(recipe), "--base-url", emu.base_url,
        "--out", str(out), "--state-dir", str(state), "--json", "--rps", "20",
    ]  # fmt: skip


def kill_at_random(cmd: list[str], rng: random.Random) -> str:
    """Start a run and SIGKILL it: after a random delay, or right after a random event of
    the run (a step submitted, running, downloading, done) plus a few ms. Returns when."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    try:
        if rng.random() < 0.4:
            delay = rng.uniform(0.5, 2.5)
            time.sleep(delay)
            when = f"after {delay:.2f}s"
        else:
            step = rng.choice(STEPS)
            state = rng.choice(("submitted", "running", "downloading", "done"))
            when = f"at {step} {state}"
            for line in proc.stdout:
                event = json.loads(line)
                if event.get("step") == step and event.get("state") == state:
                    break
            time.sleep(rng.uniform(0, 0.03))
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    return when


@pytest.mark.slow
@pytest.mark.timeout(600)  # a hang guard only: 10 cycles of two processes each, on 2 busy cores
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_sigkill_at_random_moments_then_rerun_never_submits_twice(tmp_path, chunk):
    rng = random.Random(20261126 + chunk)
    image = make_image(tmp_path / "in.png")
    # One state dir for every cycle, as on a user's machine: the journal knows every task of
    # this account, so a lost submit is the one unknown task in the task list.
    state = tmp_path / "state"
    resumed = Counter[str]()
    config = EmulatorConfig(latency=0.3, engine_time_budget=0.1, rps=0, query_qps=0)
    started = time.monotonic()
    with EmulatorThread(config) as emu:
        for cycle in range(chunk * CYCLES, (chunk + 1) * CYCLES):
            work = tmp_path / f"c{cycle}"
            work.mkdir()
            shutil.copy(image, work / "in.png")
            recipe = work / "recipe.yaml"
            recipe.write_text(RECIPE.format(cycle=cycle), encoding="utf-8")
            out = work / "out"
            when = kill_at_random(command(recipe, emu, out, state), rng)
            done = subprocess.run(command(recipe, emu, out, state), env=ENV,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, f"cycle {cycle} (killed {when}): {done.stdout}"

            counts = accepted_by_prompt(emu)
            for sid in STEPS:
                n = counts[f"c{cycle} {sid}"]
                assert n == 1, f"cycle {cycle} (killed {when}): step {sid} submitted {n} times"

            record = json.loads((out / "run.json").read_text())
            resumed["lost submits looked up"] += sum(
                "looking for it in the task list" in w for w in record["warnings"]
            )
            for sid in STEPS:
                step = record["steps"][sid]
                assert step["state"] in ("done", "cached"), (cycle, when, sid, step["state"])
                resumed[step["state"]] += 1
                resumed["reattached"] += any(a["reattached"] for a in step["attempts"])
                for result in step["results"]:
                    data = (out / result["path"]).read_bytes()
                    assert len(data) == result["size"]
                    assert hashlib.sha256(data).hexdigest() == result["sha256"], (cycle, sid)
    elapsed = time.monotonic() - started
    # The kills landed at different moments: some steps were reused from the store, some
    # picked up from a task the killed run had left on the service (in each part of 10
    # cycles; 30 cycles in one test asked for 5 cached steps in all).
    assert resumed["cached"] >= 3, resumed
    assert resumed["reattached"] >= 1, resumed
    print(f"{CYCLES} kill/re-run cycles in {elapsed:.1f}s: {dict(resumed)}")


async def test_a_dependant_sends_the_stored_copy_once_the_result_url_expired(
    emulator, recipe_file, tmp_path
):
    # The result URLs live 10 minutes here: long enough for each step's own download however
    # busy the machine, but shorter than the safety margin the runner keeps before a URL's
    # signed expiry (15 minutes), so b must send the stored copy of a's image, never the URL.
    # The control run, with URLs that live the documented 24 h, passes a's URL itself: the
    # choice follows the URL's expiry, not the clock of this test.
    path = recipe_file("""\
        version: 1
        name: expiry
        steps:
          a: {function: colorization, image: in.png, prompt: ""}
          b:
            function: super_resolution
            image: "{{ steps.a.image }}"
            prompt: ""
            parameters: {upscale_factor: 2}
    """)
    sent = {}
    for ttl in (600.0, float(wire.URL_TTL_SECONDS)):
        async with emulator(url_ttl=ttl) as emu:
            record = await execute(
                load_recipe(path),
                backend=BackendChoice("url", emu.base_url),
                run_dir=tmp_path / f"run-{int(ttl)}",
                options=fast_options(no_cache=True),
            )
        problems = {s.id: (s.state, s.error) for s in record.steps.values() if s.state != "done"}
        assert record.status == "ok", problems
        b = record.steps["b"]
        assert b.attempts[-1].status == "SUCCEEDED"
        sent[ttl] = b.attempts[-1].request["input"]["base_image_url"]
    assert sent[600.0] == "steps.a (data URI)"
    assert sent[float(wire.URL_TTL_SECONDS)].startswith("http://127.0.0.1:"), sent
