"""Secrets sweep: runs that succeed, fail, meet faults and are killed, with a known fake key
and signed URLs as inputs; then every byte they wrote (run directories, state directory, lock
file, stdout, stderr) is searched for the key and for signed query strings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from wanrecipe import wire
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread

from .helpers import FAKE_KEY, SIGNED_QUERY, cli_subprocess, data_uri, png_bytes

RECIPE = """\
version: 1
name: sweep
params:
  photo: {type: image, default: in.png}
steps:
  color:
    function: colorization
    image: "{{ params.photo }}"
  up:
    function: super_resolution
    image: "{{ steps.color.image }}"
    prompt: Image super resolution
outputs:
  final: "{{ steps.up.image }}"
"""
SIGNED = re.compile(rb"(?i)(?:Signature|Expires|OSSAccessKeyId|X-Amz-Signature)=")


def _emulator(**kw: object) -> EmulatorThread:
    return EmulatorThread(EmulatorConfig(api_key=FAKE_KEY, executor="thread", **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clean() -> Iterator[EmulatorThread]:
    with _emulator() as emu:
        yield emu


def _signed_result_url(emu: EmulatorThread) -> str:
    """A real signed result URL from the emulator: one task over the raw HTTP API."""
    auth = {"Authorization": f"Bearer {FAKE_KEY}"}
    body = {
        "model": wire.MODEL,
        "input": {"function": "colorization", "prompt": "", "base_image_url": data_uri(
            png_bytes((512, 512), noise=False))},
        "parameters": {},
    }  # fmt: skip
    submit = urllib.request.Request(
        emu.base_url + wire.SUBMIT_PATH,
        data=json.dumps(body).encode(),
        headers={**auth, "Content-Type": "application/json", wire.HEADER_ASYNC: "enable"},
    )
    with urllib.request.urlopen(submit, timeout=10) as resp:
        task_id = json.loads(resp.read())["output"]["task_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        query = urllib.request.Request(f"{emu.base_url}/tasks/{task_id}", headers=auth)
        with urllib.request.urlopen(query, timeout=10) as resp:
            output = json.loads(resp.read())["output"]
        if output["task_status"] == "SUCCEEDED":
            url = str(output["results"][0]["url"])
            assert "Signature=" in url
            return url
        time.sleep(0.1)
    raise AssertionError("the emulator did not finish one task in 60 s")


def _run(
    where: Path, emu: EmulatorThread, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"DASHSCOPE_API_KEY": FAKE_KEY, "WANRECIPE_STATE_DIR": str(where / "state")}
    proc = cli_subprocess(
        "run", "recipe.yaml", "--base-url", emu.base_url, *args, cwd=where,
        env={**env, **(extra_env or {})}, timeout=120,
    )  # fmt: skip
    (where / "captured").mkdir(exist_ok=True)
    n = len(list((where / "captured").iterdir()))
    (where / "captured" / f"{n}.out").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return proc


def _sweep(root: Path, secrets: list[bytes]) -> list[str]:
    leaks = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name in ("recipe.yaml", "in.png", "p.yaml"):
            continue
        data = path.read_bytes()
        for secret in secrets:
            if secret in data:
                leaks.append(f"{path.relative_to(root)}: contains {secret[:24]!r}...")
        m = SIGNED.search(data)
        if m:
            around = data[max(0, m.start() - 80) : m.end() + 40]
            leaks.append(f"{path.relative_to(root)}: signed query {around!r}")
    return leaks


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    (tmp_path / "in.png").write_bytes(png_bytes())
    return tmp_path


def test_no_secret_in_anything_a_run_writes(workdir: Path, clean: EmulatorThread):
    signed = _signed_result_url(clean)
    signature = signed.split("Signature=", 1)[1].encode()
    # 1. success, the photo given as a signed URL, with --json events on stdout
    ok = _run(workdir, clean, "-p", f"photo={signed}", "--json", "--out", "runs/a")
    assert ok.returncode == 0, ok.stderr
    assert (workdir / "recipe.lock").exists()
    # 2. a failing run (the service refuses the content) with a signed URL of our own making
    with _emulator(faults="task.inspection=1.0") as failing:
        bad = _run(workdir, failing, "-p", f"photo={signed}", "--no-cache", "--out", "runs/b")
        assert bad.returncode == 1, bad.stderr
    # 3. transient faults all along the way
    with _emulator(
        faults="submit.429=first:1,query.503=0.3,download.500=0.3,download.expired=first:1",
        fault_seed=3,
    ) as faulty:
        # (the signed URL in a params file this time)
        (workdir / "p.yaml").write_text(f"photo: '{signed}'\n", encoding="utf-8")
        flaky = _run(workdir, faulty, "--params", "p.yaml", "--no-cache", "--out", "runs/c")
        assert flaky.returncode in (0, 1), flaky.stderr
    # 4. killed (SIGKILL) in the middle of a run, then run again to the end
    with _emulator(latency=0.8) as slow:
        env = {**os.environ, "DASHSCOPE_API_KEY": FAKE_KEY,
               "WANRECIPE_STATE_DIR": str(workdir / "state")}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "wanrecipe", "run", "recipe.yaml", "--base-url",
             slow.base_url, "-p", f"photo={signed}", "--no-cache", "--out", "runs/d"],
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"submitted" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        (workdir / "captured" / "killed.out").write_bytes(seen + proc.stdout.read())
        proc.stdout.close()
        assert b"submitted" in seen
        again = _run(workdir, slow, "-p", f"photo={signed}", "--out", "runs/e")
        assert again.returncode == 0, again.stderr
    # 5. a base URL carrying the key: refused, and not repeated
    refused = cli_subprocess(
        "run", "recipe.yaml", "--base-url",
        clean.base_url.replace("http://", f"http://user:{FAKE_KEY}@"), cwd=workdir,
    )  # fmt: skip
    assert refused.returncode == 2
    assert FAKE_KEY not in refused.stdout + refused.stderr

    written = list(workdir.rglob("*"))
    assert any(p.name == "run.json" for p in written)
    assert any(p.name == "state.db" for p in written), written
    leaks = _sweep(workdir, [FAKE_KEY.encode(), signature, SIGNED_QUERY.encode()])
    assert leaks == []
    # The sweep looked at what matters: the signed photo is in the record, redacted.
    record = json.loads((workdir / "runs" / "a" / "run.json").read_text(encoding="utf-8"))
    assert record["params"]["photo"].endswith("?<redacted>")
    assert "photo: " in (workdir / "recipe.lock").read_text(encoding="utf-8")
    assert len([p for p in written if p.is_file()]) > 20


PLAN_RECIPE = """\
version: 1
name: sweep-plan
params:
  photo: {type: string, default: in.png}
  note: {type: string, default: plain}
  pic: {type: image, default: in.png}
  urls: {type: list, default: [in.png]}
steps:
  color:
    function: colorization
    image: "{{ params.photo }}"
    prompt: "{{ params.note }}"
  other:
    function: colorization
    image: "{{ params.pic }}"
  fan:
    foreach: "{{ params.urls }}"
    function: colorization
    image: "{{ item }}"
    prompt: "style {{ item }}"
"""


def test_no_secret_in_plan_output(tmp_path: Path):
    """``plan`` (text and ``--json``, one recipe or a batch) shows params, prompts and fan-out
    items: a signed URL or a key given in any of them, string params included, is redacted."""
    (tmp_path / "recipe.yaml").write_text(PLAN_RECIPE, encoding="utf-8")
    (tmp_path / "in.png").write_bytes(png_bytes())
    # Short, so that even a value cut to the text output's width would still show the query.
    signed = f"https://h.example/p.png?{SIGNED_QUERY}"
    given = [
        "-p", f"photo={signed}", "-p", f"note=see {signed} with {FAKE_KEY}",
        "-p", f"pic={signed}", "-p", f'urls=["{signed}", "{signed}&v=2"]',
    ]  # fmt: skip
    (tmp_path / "rows.csv").write_text(
        f'photo,note,pic\n"{signed}","{FAKE_KEY}","{signed}"\nin.png,"{signed}",in.png\n',
        encoding="utf-8",
    )
    outputs = {}
    for name, args in {
        "text": given,
        "json": [*given, "--json"],
        "batch-text": ["--batch", "rows.csv"],
        "batch-json": ["--batch", "rows.csv", "--json"],
    }.items():
        done = cli_subprocess("plan", "recipe.yaml", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs[name] = done.stdout + done.stderr
    for name, text in outputs.items():
        data = text.encode()
        assert FAKE_KEY.encode() not in data, (name, text)
        assert SIGNED.search(data) is None, (name, text)
        assert b"c2VjcmV0U2lnbmF0dXJl".lower() not in data.lower(), (name, text)
    # What was redacted is still shown, without its query.
    document = json.loads(outputs["json"])
    assert document["params"]["photo"] == "https://h.example/p.png?<redacted>"
    assert document["params"]["note"] == (
        "see https://h.example/p.png?<redacted> with sk-<redacted>"
    )
    assert document["params"]["urls"] == ["https://h.example/p.png?<redacted>"] * 2
    prompts = [s["prompt"] for level in document["levels"] for s in level]
    assert "style https://h.example/p.png?<redacted>" in prompts
    assert "photo=https://h.example/p.png?<redacted>" in outputs["text"]
    assert len(json.loads(outputs["batch-json"])["rows"]) == 2
