"""Every bad input in the corpus: exit 2, a message naming the file and line (or the input),
no traceback, and not one request counted by a real emulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wanrecipe.emulator.server import EmulatorThread

from .corpus import CASES, Case
from .helpers import cli, cli_subprocess, emulator_stats, requests_seen

BY_ID = {case.id: case for case in CASES}


def test_the_corpus_is_big_and_its_ids_unique():
    assert len(CASES) >= 100
    assert len(BY_ID) == len(CASES)


def _write(case: Case, where: Path) -> None:
    for name, content in case.files.items():
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _args(case: Case, emulator: EmulatorThread) -> list[str]:
    return [a.replace("{base_url}", emulator.base_url) for a in case.args]


@pytest.mark.parametrize("case_id", sorted(BY_ID))
def test_bad_input_is_refused_before_any_request(
    case_id: str, tmp_path: Path, emulator: EmulatorThread
):
    case = BY_ID[case_id]
    _write(case, tmp_path)
    before = requests_seen(emulator_stats(emulator.origin))
    started = time.monotonic()
    result = cli(*_args(case, emulator), cwd=tmp_path)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exc_info}"
    )
    assert "Traceback" not in output
    assert result.exit_code == 2, output
    assert __import__("re").search(case.expect, result.stderr), result.stderr
    for secret in case.never:
        assert secret not in output
    assert requests_seen(emulator_stats(emulator.origin)) == before
    assert not (tmp_path / "runs").exists()
    # Generous for a busy machine; the point is "seconds, not minutes or gigabytes".
    assert elapsed < 20, f"{case_id} took {elapsed:.1f} s"


SUBPROCESS_CASES = [
    "yaml-billion-laughs-in-parameters",
    "template-mul-1e9-in-prompt",
    "template-range-nested-3-in-outputs",
    "image-png-header-4096-corrupt-data",
    "cli-base-url-userinfo",
    "params-file-non-utf8",
]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_as_a_real_process(case_id: str, tmp_path: Path, emulator: EmulatorThread):
    """A few cases as a user runs them: a fresh interpreter, real stderr, real exit code."""
    case = BY_ID[case_id]
    _write(case, tmp_path)
    before = requests_seen(emulator_stats(emulator.origin))
    proc = cli_subprocess(*_args(case, emulator), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert __import__("re").search(case.expect, proc.stderr), proc.stderr
    for secret in case.never:
        assert secret not in proc.stderr + proc.stdout
    assert requests_seen(emulator_stats(emulator.origin)) == before
