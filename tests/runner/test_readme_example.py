"""The README's Python example, verbatim, as a new user runs it: saved as a script (no main
guard), run twice from a copy of the repository's recipes (the second run from the cache)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.runs import run_python
from wanrecipe.store import StateDir

ROOT = Path(__file__).parents[2]


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "run_recipe(" in b]
    assert blocks, "README.md has no Python example that calls run_recipe"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_python_example_runs_as_a_plain_script(tmp_path: Path) -> None:
    code = readme_python_example()
    assert "__main__" not in code, "the example is meant to work without a main guard"
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes", ignore=shutil.ignore_patterns(".*"))
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    outputs = []
    for _ in range(2):
        done = run_python("example.py", cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip())
    runs = sorted((tmp_path / "runs" / "old-photo").iterdir())
    assert len(runs) == 2, runs  # one per run of the script, none from engine workers
    for out, run in zip(outputs, runs, strict=True):
        assert out.splitlines() == [f"ok {[str(Path('runs', 'old-photo', run.name, 'widen.png'))]}"]
    with StateDir.open(tmp_path / "recipes" / ".wanrecipe") as state:
        attempts = state.journal.attempts()
    assert sorted(a.step for a in attempts) == ["colorize", "upscale", "widen"], attempts
    assert {a.state for a in attempts} == {"done"}
