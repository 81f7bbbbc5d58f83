"""``run_recipe()`` on the embedded emulator from wherever a user calls it, with no
``if __name__ == "__main__":`` guard: a plain script, ``python -c`` and a Jupyter kernel.

The emulator's engine workers are separate processes (forkserver or spawn). Started the usual
way, each would run the user's ``__main__`` again first, and with it the recipe. These tests run
the real thing and then check that the recipe ran exactly once: one result line, one run
directory, one journal attempt per step, every one of them done.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.runs import USER_ENV, make_image, run_python
from wanrecipe.store import StateDir

RECIPE = """\
version: 1
name: script
steps:
  colorize: {function: colorization, image: in.png, prompt: blue sky}
  upscale:
    function: super_resolution
    image: "{{ steps.colorize.image }}"
    prompt: sharper
outputs:
  final: "{{ steps.upscale.image }}"
"""

#: What a user writes, straight from the README: no main guard.
USER_CODE = """\
import json
from wanrecipe import run_recipe

record = run_recipe("recipe.yaml")
print("RESULT " + json.dumps({"status": record.status, "outputs": record.outputs}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_image(tmp_path / "in.png", gray=True)
    (tmp_path / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    return tmp_path


def check_ran_once(project: Path, output: str) -> None:
    results = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, output
    result = json.loads(results[0].removeprefix("RESULT "))
    assert result["status"] == "ok", output
    runs = sorted((project / "runs" / "script").iterdir())
    assert len(runs) == 1, f"stray run directories: {runs}"
    final = str(Path("runs", "script", runs[0].name, "upscale.png"))
    assert result["outputs"] == {"final": [final]}
    assert (project / result["outputs"]["final"][0]).is_file()
    with StateDir.open(project / ".wanrecipe") as state:
        attempts = state.journal.attempts()
        assert sorted(a.step for a in attempts) == ["colorize", "upscale"], attempts
        assert {a.state for a in attempts} == {"done"}, attempts
        assert state.journal.unfinished() == []


def test_a_plain_script_without_a_main_guard(project: Path) -> None:
    (project / "make_it.py").write_text(USER_CODE, encoding="utf-8")
    done = run_python("make_it.py", cwd=project)
    assert done.returncode == 0, done.stderr
    check_ran_once(project, done.stdout)


def test_python_dash_m_of_a_module_without_a_main_guard(project: Path) -> None:
    # multiprocessing re-runs a module by name (init_main_from_name), a script by path.
    (project / "make_it_mod.py").write_text(USER_CODE, encoding="utf-8")
    done = run_python("-m", "make_it_mod", cwd=project)
    assert done.returncode == 0, done.stderr
    check_ran_once(project, done.stdout)


def test_python_dash_c(project: Path) -> None:
    done = run_python("-c", USER_CODE, cwd=project)
    assert done.returncode == 0, done.stderr
    check_ran_once(project, done.stdout)


def test_a_jupyter_kernel(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    # A kernel spec of our own, so the kernel is this interpreter (not whatever "python3"
    # spec the machine happens to have).
    specs = tmp_path_factory.mktemp("kernels")
    spec = specs / "wanrecipe-test"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "wanrecipe test", "language": "python"}),
        encoding="utf-8",
    )
    km = KernelManager(
        kernel_name="wanrecipe-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[specs])
    )
    km.start_kernel(cwd=str(project), env=USER_ENV)
    try:
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            output: list[str] = []
            errors: list[str] = []

            def hook(msg: dict) -> None:
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    output.append(content["text"])
                elif kind == "error":
                    errors.append("\n".join(content["traceback"]))

            # The cell as a user would type it; a second cell proves the kernel still works.
            reply = kc.execute_interactive(
                textwrap.dedent(USER_CODE), timeout=240, output_hook=hook
            )
            assert reply["content"]["status"] == "ok", errors
            again = kc.execute_interactive("print('ALIVE', 6 * 7)", timeout=60, output_hook=hook)
            assert again["content"]["status"] == "ok", errors
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    text = "".join(output)
    assert "ALIVE 42" in text
    check_ran_once(project, text)


def test_only_the_engine_workers_start_without_main() -> None:
    """The wrapper hides ``__main__`` from our pool's workers and from nothing else."""
    from multiprocessing import spawn

    from wanrecipe.emulator import pool as engine_pool
    from wanrecipe.emulator.app import make_executor

    executor = make_executor("process", 1)
    try:
        assert executor.submit(os.getpid).result(timeout=120) != os.getpid()
    finally:
        executor.shutdown(wait=True)
    assert engine_pool._original is not None, "the pool started its worker through the wrapper"
    assert spawn.get_preparation_data("other") == engine_pool._original("other")
    with engine_pool._without_main():
        hidden = spawn.get_preparation_data("other")
    assert not set(hidden) & set(engine_pool._MAIN_ENTRIES)


#: A host that runs an event loop in the main thread and calls the sync API from a coroutine
#: (as a Jupyter cell does), then an interrupt (what the kernel's "interrupt" sends).
#:
#: Like ipykernel around every cell (``pre_handler_hook``), the host installs Python's own
#: SIGINT handler first. Without it the test depended on how pytest was started: a process
#: started in the background by a non-interactive shell (``cmd &``, nohup, some CI runners)
#: inherits SIGINT *ignored*, Python then installs no handler, the signal is dropped and the
#: run went on to its next step and ended ``ok`` two minutes later: the "one step too far"
#: seen "sometimes". (``wanrecipe run`` sets its own handler on the loop, so it is immune.)
INTERRUPTED = """\
import asyncio, json, os, signal, threading
signal.signal(signal.SIGINT, signal.default_int_handler)
from wanrecipe import run_recipe
from wanrecipe.emulator import EmulatorConfig, EmulatorThread
from wanrecipe.runner import BackendChoice

def on_event(event):
    if event.kind == "step" and event.state == "submitted":
        {send}

async def cell(emu):
    try:
        run_recipe("recipe.yaml", run_dir="out", on_event=on_event,
                   backend=BackendChoice("url", emu.base_url))
    except KeyboardInterrupt:
        print("RAISED KeyboardInterrupt")

with EmulatorThread(EmulatorConfig(latency=60.0)) as emu:
    asyncio.new_event_loop().run_until_complete(cell(emu))
print("STATUS " + json.load(open("out/run.json"))["status"])
"""


@pytest.mark.parametrize(
    "send",
    [
        # What a kernel's interrupt sends: the kernel picks the thread that takes it.
        "os.kill(os.getpid(), signal.SIGINT)",
        # The case that was lost: the signal lands on the run's own thread (on_event runs
        # there), while the host's main thread waits for the run.
        "signal.pthread_kill(threading.get_ident(), signal.SIGINT)",
    ],
    ids=["process", "run-thread"],
)
def test_an_interrupt_under_a_running_loop_stops_the_run(project: Path, send: str) -> None:
    done = run_python("-c", INTERRUPTED.replace("{send}", send), cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["RAISED KeyboardInterrupt", "STATUS interrupted"], done.stdout + done.stderr
    with StateDir.open(project / ".wanrecipe") as state:
        attempts = state.journal.attempts()
    # The task it had submitted stays in the journal for the next run to pick up.
    assert [(a.step, a.state) for a in attempts] == [("colorize", "submitted")], attempts
