"""Golden files: each broken recipe in broken/ with the exact messages `validate` prints.

A recipe's first line may be ``# params: name=value ...`` (what a user would pass with -p).
Regenerate after an intended wording change with ``WANRECIPE_UPDATE_GOLDEN=1 pytest
tests/recipe/test_broken.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wanrecipe import validate_recipe

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(p.name for p in BROKEN.glob("*.yaml"))
UPDATE = os.environ.get("WANRECIPE_UPDATE_GOLDEN") == "1"


def _params(path: Path) -> dict[str, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    if not first.startswith("# params:"):
        return {}
    pairs = (item.partition("=") for item in first.removeprefix("# params:").split())
    return {name: value for name, _, value in pairs}


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_broken_recipe_messages(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(BROKEN)  # messages name the file as the user gave it: relative
    report = validate_recipe(name, _params(BROKEN / name))
    text = "".join(d.format() + "\n" for d in report.diagnostics)
    expected_path = BROKEN / (name.removesuffix(".yaml") + ".expected")
    if UPDATE:
        expected_path.write_text(text, encoding="utf-8")
    assert text == expected_path.read_text(encoding="utf-8")
    if name.endswith("-warning.yaml"):
        assert report.ok and report.warnings
    else:
        assert not report.ok
