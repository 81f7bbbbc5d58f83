"""`wanrecipe run` as a user runs it: real subprocesses, a real server, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
ENV.pop("DASHSCOPE_API_KEY", None)
ENV.pop("WANRECIPE_BACKEND", None)


def wanrecipe(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wanrecipe", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


THREE = """\
    version: 1
    name: three
    steps:
      a: {function: colorization, image: in.png, prompt: ""}
      b: {function: colorization, image: in.png, prompt: "", parameters: {seed: 2}}
      c: {function: colorization, image: "{{ steps.a.image }}", prompt: ""}
    outputs:
      last: "{{ steps.c.image }}"
"""


def test_run_against_a_served_emulator_prints_outputs_and_exits_0(recipe_file, tmp_path):
    path = recipe_file(THREE)
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
        done = wanrecipe("run", str(path), "--base-url", emu.base_url, "--out", "out", cwd=tmp_path)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr
    assert f"backend: url:127.0.0.1:{emu.port}" in done.stderr
    assert "run ok" in done.stderr
    assert "output last: out/c.png" in done.stderr
    assert stats["submissions"]["accepted"] == 3
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["status"] == "ok"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.png",
        "b.png",
        "c.png",
        "run.json",
    ]


def test_json_events_one_per_line(recipe_file, tmp_path):
    path = recipe_file(THREE)
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
        done = wanrecipe(
            "run", str(path), "--base-url", emu.base_url, "--out", "out", "--json", cwd=tmp_path
        )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "run_started"
    assert events[-1] == {**events[-1], "event": "run_finished", "status": "ok", "images": 3}
    done_steps = {e["step"] for e in events if e.get("state") == "done"}
    assert done_steps == {"a", "b", "c"}


def test_a_failed_step_exits_1_and_names_the_code(recipe_file, tmp_path):
    path = recipe_file(THREE)
    config = EmulatorConfig(engine_time_budget=0.2, faults="task.inspection=first:1")
    with EmulatorThread(config) as emu:
        done = wanrecipe("run", str(path), "--base-url", emu.base_url, "--out", "out", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "failed a: DataInspectionFailed: " in done.stderr
    assert "skipped c: a did not finish" in done.stderr


def test_bad_input_exits_2_before_any_request(recipe_file, tmp_path):
    path = recipe_file("""\
        version: 1
        name: bad
        steps:
          ok: {function: colorization, image: in.png, prompt: ""}
          missing: {function: colorization, image: nowhere.png, prompt: ""}
    """)
    with EmulatorThread(EmulatorConfig()) as emu:
        done = wanrecipe("run", str(path), "--base-url", emu.base_url, cwd=tmp_path)
        stats = emu.stats()
    assert done.returncode == 2
    assert "recipe.yaml:5:44: error: steps.missing.image: nowhere.png: no such file" in done.stderr
    assert stats["submissions"]["attempts"] == 0


@pytest.mark.parametrize(
    "args,env,message",
    [
        (["--backend", "dashscope"], {}, "needs DASHSCOPE_API_KEY"),
        (["--base-url", "https://example.com/api/v1"], {}, "is not on this machine"),
        (["--backend", "cloud"], {}, "Invalid value for '--backend'"),
    ],
)
def test_backend_usage_errors_exit_2(recipe_file, tmp_path, args, env, message):
    path = recipe_file(THREE)
    done = wanrecipe("run", str(path), *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.slow
def test_sigint_cancels_pending_keeps_done_and_exits_3(recipe_file, tmp_path):
    path = recipe_file(THREE)
    # One running slot on the server and two on the client: the second task sits PENDING.
    config = EmulatorConfig(engine_time_budget=0.2, latency=2.0, concurrency=1)
    with EmulatorThread(config) as emu:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wanrecipe",
                "run",
                str(path),
                "--base-url",
                emu.base_url,
                "--out",
                "out",
                "--json",
            ],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        submitted = set()
        deadline = time.monotonic() + 240  # a hang guard
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("state") == "submitted":
                submitted.add(event["step"])
            if submitted == {"a", "b"} or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=240)
        stats = emu.stats()
    assert proc.returncode == 3, err
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["status"] == "interrupted"
    steps = record["steps"]
    assert steps["a"]["state"] == "done" and (tmp_path / "out" / "a.png").exists()
    assert steps["b"]["attempts"][0]["status"] == "CANCELED"
    assert steps["c"]["state"] == "skipped"
    assert stats["tasks"]["reached"].get("CANCELED") == 1
    assert stats["submissions"]["accepted"] == 2


def test_run_recipe_on_the_embedded_emulator(recipe_file, tmp_path):
    from wanrecipe import run_recipe

    path = recipe_file(THREE)
    record = run_recipe(path, run_dir=tmp_path / "out")
    assert record.status == "ok"
    assert record.backend == "local"
    assert record.base_url.startswith("http://127.0.0.1:")
    assert (tmp_path / "out" / "c.png").exists()


@pytest.mark.slow
def test_run_against_wanrecipe_serve_in_a_subprocess(recipe_file, tmp_path):
    path = recipe_file(THREE)
    serve = subprocess.Popen(
        [sys.executable, "-m", "wanrecipe", "serve", "--port", "0", "--workers", "1",
         "--over-concurrency", "reject"],
        env=ENV, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serve.stderr is not None
        line = serve.stderr.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/api/v1)", line)
        assert match, line
        base_url = match.group(1)
        done = wanrecipe("run", str(path), "--base-url", base_url, "--out", "out", cwd=tmp_path)
        with urllib.request.urlopen(base_url.replace("/api/v1", "/emulator/stats")) as answer:
            stats = json.load(answer)
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "ok"
    assert stats["submissions"]["accepted"] == 3
    assert stats["submissions"]["refused"] == 0, "the client kept the account's quota"
    assert stats["tasks"]["peak_running"] <= 2
