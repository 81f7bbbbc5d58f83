"""The embedded emulator serves before its engine workers have finished starting: a job
submitted meanwhile waits in a helper thread for the pool, never on the event loop."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wanrecipe.emulator.early import PendingPool as _PendingPool


def _square(x: int) -> int:
    return x * x


def test_jobs_submitted_before_the_pool_is_up_run_once_it_is() -> None:
    ready = threading.Event()
    pool = ThreadPoolExecutor(2)

    def take() -> ThreadPoolExecutor:
        ready.wait(10)  # the pool is still starting
        return pool

    pending = _PendingPool(take)
    t0 = time.monotonic()
    futures = [pending.submit(_square, i) for i in range(4)]
    assert time.monotonic() - t0 < 1.0  # submit never waits for the pool
    assert not any(f.done() for f in futures)
    ready.set()
    assert [f.result(timeout=10) for f in futures] == [0, 1, 4, 9]
    assert pending.submit(_square, 5).result(timeout=10) == 25  # now straight to the pool
    pending.shutdown(wait=True)


def test_a_job_cancelled_while_the_pool_starts_never_runs() -> None:
    ready = threading.Event()
    ran: list[int] = []

    def record(x: int) -> int:
        ran.append(x)
        return x

    pool = ThreadPoolExecutor(1)
    pending = _PendingPool(lambda: (ready.wait(10), pool)[1])
    future = pending.submit(record, 1)
    assert future.cancel()
    ready.set()
    assert pending.submit(record, 2).result(timeout=10) == 2
    pending.shutdown(wait=True)
    assert ran == [2]


def test_an_error_in_the_job_reaches_its_caller() -> None:
    pool = ThreadPoolExecutor(1)
    pending = _PendingPool(lambda: pool)

    def boom() -> None:
        raise ValueError("engine failure")

    with pytest.raises(ValueError, match="engine failure"):
        pending.submit(boom).result(timeout=10)
    pending.shutdown(wait=True)


# -- the embedded emulator's own process ---------------------------------------------------


def _get_json(url: str) -> dict:
    import json
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    with opener.open(url, timeout=60) as answer:
        return json.loads(answer.read())


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as exited)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_it_answers_a_request_sent_before_it_serves_and_stops_when_told() -> None:
    import os

    from wanrecipe.runner.embedded import EmbeddedEmulator

    emu = EmbeddedEmulator()
    # At once, before the child can have imported its server: the request waits in the
    # socket's backlog (this process bound it) and is answered once the child serves.
    stats = _get_json(emu.base_url.removesuffix("/api/v1") + "/emulator/stats")
    assert stats["submissions"]["accepted"] == 0
    assert os.getsid(emu.process.pid) == emu.process.pid  # its own session: no terminal Ctrl-C
    assert emu.stop() == 0  # end of file on its stdin: a clean exit
    with pytest.raises(OSError):  # its socket went with it
        _get_json(emu.base_url.removesuffix("/api/v1") + "/emulator/stats")


def test_it_never_outlives_the_process_that_started_it(tmp_path) -> None:
    """The run is killed (SIGKILL: no cleanup of its own): its emulator exits by itself."""
    import json
    import os
    import signal

    from tests.runs import run_python

    script = tmp_path / "parent.py"
    script.write_text(
        "import json, os, signal, urllib.request\n"
        "from wanrecipe.runner.embedded import EmbeddedEmulator\n"
        "emu = EmbeddedEmulator()\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "opener.open(emu.base_url[: -len('/api/v1')] + '/emulator/stats', timeout=60).read()\n"
        "print(json.dumps({'child': emu.process.pid}), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
        encoding="utf-8",
    )
    done = run_python(str(script), cwd=tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    child = json.loads(done.stdout.splitlines()[-1])["child"]
    deadline = time.monotonic() + 60  # a bound on a hang, not a speed check
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), f"the emulator (pid {child}) outlived its run"
    assert os.getpid() != child


def test_an_emulator_no_run_took_is_stopped() -> None:
    from wanrecipe.runner import embedded
    from wanrecipe.runner.choice import BackendChoice

    embedded.start_embedded_early(BackendChoice("url", "http://127.0.0.1:9/api/v1"))
    assert embedded._early is None  # only the local backend has one
    embedded.start_embedded_early(BackendChoice("local"))
    early = embedded._early
    assert early is not None
    embedded.discard_early()
    assert embedded._early is None
    assert early.process.returncode is not None


def test_an_invalid_recipe_exits_2_and_leaves_no_process_behind(tmp_path) -> None:
    """The emulator was started before the check; the run exits 2 without a request, and
    every process it started (the emulator, its forkserver and engine workers, which all
    hold the run's stderr) is gone when it exits: otherwise reading stderr to its end would
    never finish."""
    import subprocess
    import sys

    from tests.runs import USER_ENV, make_image

    make_image(tmp_path / "small.png", (256, 256))  # under the API's 512 px minimum
    (tmp_path / "bad.yaml").write_text(
        "version: 1\nname: bad\nsteps:\n  a: {function: remove_watermark, image: small.png, "
        "prompt: x}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "wanrecipe", "run", "bad.yaml"],
        cwd=tmp_path,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "bad.yaml:4" in done.stderr and "512" in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


def test_engines_not_started_yet_start_when_first_needed() -> None:
    from wanrecipe.emulator.early import EarlyEngines

    made: list[ThreadPoolExecutor] = []

    def make() -> ThreadPoolExecutor:
        made.append(ThreadPoolExecutor(1))
        return made[-1]

    early = EarlyEngines(make, 0, start=False)
    assert made == []  # nothing started at construction
    pending = early.pending()
    assert pending.submit(_square, 3).result(timeout=10) == 9  # the job starts the pool
    early.start()  # a second start is harmless
    assert len(made) == 1
    pending.shutdown(wait=True)


def test_run_recipe_starts_the_emulator_first_and_stops_it_when_the_recipe_is_invalid(
    tmp_path, monkeypatch
) -> None:
    from wanrecipe import run_recipe
    from wanrecipe.errors import RecipeError
    from wanrecipe.runner import embedded

    (tmp_path / "bad.yaml").write_text("version: 1\nname: bad\nsteps: {}\n", encoding="utf-8")
    started: list[object] = []
    real = embedded.EmbeddedEmulator

    class Watched(real):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            started.append(self)

    monkeypatch.setattr(embedded, "EmbeddedEmulator", Watched)  # a real one, counted
    with pytest.raises(RecipeError):
        run_recipe(tmp_path / "bad.yaml", run_dir=tmp_path / "out")
    assert len(started) == 1  # started before the check
    assert started[0].process.returncode is not None  # and stopped after it
    assert embedded._early is None


async def test_an_emulator_that_could_not_start_is_reported_at_once(monkeypatch) -> None:
    from wanrecipe.runner import embedded
    from wanrecipe.runner.choice import BackendChoice

    # A process that fails as an emulator would that cannot import its server.
    monkeypatch.setattr(embedded, "_BOOT", "import sys; sys.exit(3)")
    embedded.start_embedded_early(BackendChoice("local"))
    assert embedded._early is not None
    assert embedded._early.process.wait(60) == 3
    with pytest.raises(embedded.EmbeddedEmulatorError, match="exit code 3"):
        async with embedded.open_backend(BackendChoice("local")):
            raise AssertionError("not reached")
    assert embedded._early is None
