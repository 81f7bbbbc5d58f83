#!/usr/bin/env python3
"""Soak: run recipes under the emulator's faults for a while and print what went wrong.

Not part of CI. Each round picks a fault mix (one kind alone, or every transient kind at 20%),
a seed, and sometimes a SIGKILL in the middle of the run followed by a re-run; it runs a
four-step recipe with ``wanrecipe run`` in a subprocess against one emulator on 127.0.0.1, and
checks what a user relies on:

- the run ends (every wait is bounded: a round over its time limit is a finding);
- no traceback on stderr;
- a run that says ok has every output, and re-running it costs nothing (all cached);
- a run that met transient faults only ends with exit 0 (exit 1 is a finding, with the
  errors it printed);
- nothing billed twice: billed images (emulator stats) <= outputs + retried FAILED tasks;
- no secret written: the fake key and signed query strings never appear in any file of the
  run directory, the state directory, the lock file, stdout or stderr.

    python scripts/soak.py                 # 30 minutes
    python scripts/soak.py --duration 2m --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from wanrecipe.durations import parse_duration  # noqa: E402
from wanrecipe.emulator.config import EmulatorConfig  # noqa: E402
from wanrecipe.emulator.faults import FAULT_KINDS  # noqa: E402
from wanrecipe.emulator.server import EmulatorThread  # noqa: E402

KEY = "sk-soakFAKEKEY0123456789abcdef"
SIGNED = re.compile(rb"(?i)(?:Signature|Expires|OSSAccessKeyId)=")
TRANSIENT = [k for k in FAULT_KINDS if k not in ("task.inspection",)]
RECIPE = """\
version: 1
name: soak
params:
  seed: {type: integer, default: 1}
# FAILED tasks (free at DashScope) retried as in the fault matrix: three kinds of task failure
# at 20% each fail half the attempts, far beyond any real service.
defaults: {retry: 8}
steps:
  a:
    function: colorization
    image: in.png
    parameters: {seed: "{{ params.seed }}"}
  b:
    function: super_resolution
    image: "{{ steps.a.image }}"
    prompt: Image super resolution
  c:
    function: stylization_all
    image: in.png
    prompt: a watercolour
    parameters: {seed: "{{ params.seed }}"}
  d:
    function: remove_watermark
    image: "{{ steps.c.image }}"
    prompt: remove the text
outputs:
  up: "{{ steps.b.image }}"
  clean: "{{ steps.d.image }}"
"""
STEPS = 4


def stats(emu: EmulatorThread) -> dict:
    with urllib.request.urlopen(emu.origin + "/emulator/stats", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def run(work: Path, emu: EmulatorThread, args: list[str], kill_after: float | None,
        limit: float) -> tuple[int | None, str]:  # fmt: skip
    env = {**os.environ, "DASHSCOPE_API_KEY": KEY, "WANRECIPE_STATE_DIR": str(work / "state"),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "wanrecipe", "run", "recipe.yaml", "--base-url", emu.base_url,
         *args], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if kill_after is not None:
            try:
                out, _ = proc.communicate(timeout=kill_after)
                return proc.returncode, out.decode(errors="replace")
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                out, _ = proc.communicate(timeout=30)
                return None, out.decode(errors="replace")
        out, _ = proc.communicate(timeout=limit)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -999, out.decode(errors="replace")


def sweep(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.name not in ("recipe.yaml", "in.png"):
            data = path.read_bytes()
            if KEY.encode() in data or SIGNED.search(data):
                found.append(str(path.relative_to(root)))
    return found


@dataclass
class Row:
    """What the rounds of one fault mix did, for the closing table."""

    rounds: int = 0
    killed: int = 0
    exit0: int = 0
    exit1: int = 0
    findings: int = 0
    billed: int = 0
    failed_tasks: int = 0
    outputs: int = 0


def error_lines(transcript: str) -> str:
    """What a failed run said about its failures (not its warnings about retries)."""
    lines = [
        ln.strip()
        for ln in transcript.splitlines()
        if ("failed" in ln or "error" in ln.lower()) and "warning:" not in ln
    ]
    return " | ".join(dict.fromkeys(lines))[:400] or transcript[-300:]


def one_round(
    number: int, rng: random.Random, limit: float, table: dict[str, Row], mix: str | None
) -> tuple[str, list[str]]:
    if mix is not None:
        spec = mix
    elif rng.random() < 0.5:
        kind = rng.choice(TRANSIENT)
        amount = rng.choice(["first:2", "25%"])
        spec, mix = f"{kind}={amount}", f"{kind}={amount}"
    else:
        spec, mix = ",".join(f"{k}=20%" for k in TRANSIENT), "all transient=20%"
    assert mix is not None
    seed = rng.randrange(1_000_000)
    kill = rng.random() < 0.3
    label = f"round {number}: {mix} seed={seed}{' +SIGKILL' if kill else ''}"
    findings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wanrecipe-soak-") as tmp:
        work = Path(tmp)
        (work / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
        Image.effect_noise((512, 512), 40).convert("RGB").save(work / "in.png")
        config = EmulatorConfig(api_key=KEY, executor="thread", faults=spec, fault_seed=seed)
        with EmulatorThread(config) as emu:
            args = ["-p", f"seed={seed}", "--out", "out"]
            transcript = ""
            if kill:
                code, out = run(work, emu, args, rng.uniform(0.3, 3.0), limit)
                transcript += out
            code, out = run(work, emu, args, None, limit)
            transcript += out
            if code == -999:
                findings.append(f"did not finish within {limit:.0f} s")
            if "Traceback" in transcript:
                findings.append("traceback: " + transcript.split("Traceback", 1)[1][:300])
            outputs = sorted(p.name for p in (work / "out").glob("*.png"))
            if code == 0 and len(outputs) < STEPS:
                findings.append(f"exit 0 with {len(outputs)} of {STEPS} outputs")
            if code == 1:
                findings.append("exit 1 under transient faults: " + error_lines(out))
            if code not in (0, 1, None, -999):
                findings.append(f"exit {code}")
            s = stats(emu)
            failed_tasks = s["tasks"]["reached"].get("FAILED", 0)
            row = table.setdefault(mix, Row())
            row.rounds += 1
            row.killed += kill
            row.exit0 += code == 0
            row.exit1 += code == 1
            row.findings += len(findings)
            row.billed += s["billed_images"]
            row.failed_tasks += failed_tasks
            row.outputs += len(outputs)
            if s["billed_images"] > STEPS + failed_tasks:
                findings.append(
                    f"billed {s['billed_images']} images for {STEPS} steps "
                    f"(+{failed_tasks} failed tasks)"
                )
            if code == 0:
                before = s["billed_images"]
                again, _ = run(work, emu, [*args, "--out", "out2"], None, limit)
                if again != 0 or stats(emu)["billed_images"] != before:
                    findings.append("a re-run of a finished run was not free")
            (work / "transcript.txt").write_text(transcript, encoding="utf-8")
            leaks = sweep(work)
            if leaks:
                findings.append("secret written in: " + ", ".join(leaks[:5]))
                row.findings += 1
        return label + f": exit {code}, {len(outputs)} outputs", findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="30m", help="how long to soak (default 30m)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round choices")
    parser.add_argument("--round-limit", default="5m", help="time limit of one run")
    parser.add_argument(
        "--mix", default=None, metavar="FAULTS",
        help="one fault mix for every round (the emulator's --faults syntax), e.g. "
        "submit.lost=first:2",
    )  # fmt: skip
    ns = parser.parse_args()
    duration = parse_duration(ns.duration)
    limit = parse_duration(ns.round_limit)
    seed = ns.seed if ns.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"soak: {ns.duration}, seed {seed}, on 127.0.0.1 only", flush=True)
    end = time.monotonic() + duration
    rounds = 0
    problems: Counter[str] = Counter()
    examples: dict[str, str] = {}
    table: dict[str, Row] = {}
    while time.monotonic() < end:
        rounds += 1
        label, findings = one_round(rounds, rng, limit, table, ns.mix)
        print(("FAIL " if findings else "ok   ") + label, flush=True)
        for finding in findings:
            key = finding.split(":", 1)[0]
            problems[key] += 1
            examples.setdefault(key, f"{label}: {finding}")
            print(f"     {finding}", flush=True)
    print(f"\n{rounds} rounds, {sum(problems.values())} findings\n")
    print(f"{'fault mix':<24} {'rounds':>6} {'killed':>6} {'exit 0':>6} {'exit 1':>6} "
          f"{'outputs':>8} {'billed':>6} {'FAILED':>6} {'findings':>8}")  # fmt: skip
    for mix, r in sorted(table.items()):
        print(f"{mix:<24} {r.rounds:>6} {r.killed:>6} {r.exit0:>6} {r.exit1:>6} "
              f"{r.outputs:>4}/{r.rounds * STEPS:<3} {r.billed:>6} {r.failed_tasks:>6} "
              f"{r.findings:>8}")  # fmt: skip
    print(
        "(outputs: present / expected; billed: images the emulator billed, kill and re-run "
        "included; FAILED: tasks that ended FAILED, each may bill a retry)\n"
    )
    for key, count in problems.most_common():
        print(f"  {count:4d}  {key}\n        e.g. {examples[key]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
