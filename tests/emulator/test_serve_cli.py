"""``wanrecipe serve``: help, option errors, and a real server process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from click.testing import CliRunner

from wanrecipe import wire
from wanrecipe.cli import main
from wanrecipe.emulator.faults import FAULT_KINDS

from .emu_helpers import KEY, SUBMIT_HEADERS, body


def test_help_documents_the_fault_spec():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for kind in FAULT_KINDS:
        assert kind in result.output
    assert "first:N" in result.output
    assert "Example:" in result.output
    for option in ("--latency", "--rps", "--concurrency", "--over-concurrency", "--faults",
                   "--fault-seed", "--api-key", "--data-dir", "--task-ttl", "--url-ttl",
                   "--query-qps", "--badge"):  # fmt: skip
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "query.999=1"], "unknown kind 'query.999'"),
        (["--task-ttl", "soon"], "is not a duration"),
        (["--latency", "slow"], "is not a latency"),
        (["--concurrency", "-1"], "concurrency must be >= 0"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str):
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2
    assert message in result.output


def _request(url: str, payload: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
        return json.loads(raw) if r.headers.get_content_type() == "application/json" else raw


@pytest.mark.slow
def test_serve_process_answers_and_logs_no_secrets(tmp_path):
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    args = [sys.executable, "-m", "wanrecipe", "serve", "--port", "0", "--api-key", KEY,
            "--data-dir", str(tmp_path), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/api/v1)", line)
        assert match, line
        base = match.group(1)
        task = _request(base + wire.SUBMIT_PATH, body(), SUBMIT_HEADERS)
        task_id = task["output"]["task_id"]
        auth = {"Authorization": f"Bearer {KEY}"}
        deadline = time.monotonic() + 120  # a hang guard
        while True:
            answer = _request(f"{base}/tasks/{task_id}", headers=auth)
            if answer["output"]["task_status"] in wire.TERMINAL_STATUSES:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert answer["output"]["task_status"] == "SUCCEEDED"
        png = _request(answer["output"]["results"][0]["url"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "results" / task_id / "0.png").read_bytes() == png
        stats = _request(base.replace("/api/v1", "/emulator/stats"))
        assert stats["billed_images"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert f"GET /api/v1/tasks/{task_id} 200" in err
    assert "/results/" in err
    assert "Signature" not in err
    assert KEY not in err
