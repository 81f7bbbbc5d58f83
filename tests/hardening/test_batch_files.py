"""Hostile batch (rows) files: each refused with the file and line, quickly, no traceback.

``run`` has no batch flags yet, so these go through the rows API that the batch runner calls
before anything is sent (wanrecipe.recipe.rows.load_rows / each_rows)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from wanrecipe import load_recipe
from wanrecipe.errors import RecipeError
from wanrecipe.recipe.rows import each_rows, load_rows

from .corpus import BOMB_HEAD, LAUGHS, OK_PNG
from .helpers import crafted_png, random_bytes

RECIPE = """\
version: 1
name: batch
params:
  photo: {type: image, default: ok.png}
  s: {type: number, default: 0.5}
steps:
  c:
    function: stylization_all
    image: "{{ params.photo }}"
    prompt: x
    parameters: {strength: "{{ params.s }}"}
"""
TRUNCATED = OK_PNG[: len(OK_PNG) // 2]
CASES: dict[str, tuple[str, bytes | str, str]] = {
    "csv-non-utf8": (
        "rows.csv",
        b"photo,s\nok.png,0.5\nok.png,\xff\n",
        r"rows\.csv:3:8: error: not UTF-8",
    ),
    "csv-nan": ("rows.csv", "s\n0.5\nnan\n", r"rows\.csv:3: error: column s: expected a number"),
    "csv-inf": ("rows.csv", "s\ninf\n", r"rows\.csv:2: error: column s: expected a number"),
    "csv-truncated-image": (
        "rows.csv",
        "photo\nt.png\n",
        r"rows\.csv:2: error: .*t\.png: the image data is damaged",
    ),
    "csv-corrupt-4096": (
        "rows.csv",
        "photo\nc.png\n",
        r"rows\.csv:2: error: .*c\.png: the image data is damaged",
    ),
    "csv-nul-path": (
        "rows.csv",
        'photo\n"a\x00b.png"\n',
        r"rows\.csv:2: error: .*NUL|rows\.csv:\d+: error",
    ),
    "csv-key-escapes": ("rows.csv", "key,s\n../up,0.5\n", r"rows\.csv:2: error: .*key"),
    "csv-unknown-column": ("rows.csv", "nope\n1\n", r"rows\.csv:1: error: .*nope"),
    "yaml-laughs": (
        "rows.yaml",
        BOMB_HEAD + LAUGHS + "rows: *i\n",
        r"rows\.yaml:\d+:\d+: error: this value expands",
    ),
    "yaml-python-tag": (
        "rows.yaml",
        "- s: !!python/object/apply:os.getpid []\n",
        r"rows\.yaml:1:\d+: error: invalid YAML",
    ),
    "yaml-latin1": ("rows.yaml", b"- s: 0.5\n- s: caf\xe9\n", r"rows\.yaml:2:9: error: not UTF-8"),
    "json-nan": (
        "rows.json",
        '[{"s": NaN}]',
        r"rows\.json:1: error: column s: expected a number, got .NaN.",
    ),
    "jsonl-broken": (
        "rows.jsonl",
        '{"s": 0.5}\n{"s": \n',
        r"rows\.jsonl:2:\d+: error: invalid JSON",
    ),
    "jsonl-non-utf8": (
        "rows.jsonl",
        b'{"s": 0.5}\n{"s": "\xfe"}\n',
        r"rows\.jsonl:2:8: error: not UTF-8",
    ),
    "huge-file": (
        "rows.csv",
        "s\n" + "0.5\n" * (17 * 1024 * 1024),
        r"rows\.csv: error: over 64 MB",
    ),
}


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_rows_file_is_refused_with_file_and_line(case_id: str, tmp_path: Path):
    name, content, expect = CASES[case_id]
    (tmp_path / "ok.png").write_bytes(OK_PNG)
    (tmp_path / "t.png").write_bytes(TRUNCATED)
    (tmp_path / "c.png").write_bytes(crafted_png(4096, 4096, random_bytes(4000)))
    (tmp_path / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    recipe = load_recipe(tmp_path / "recipe.yaml")
    started = time.monotonic()
    with pytest.raises(RecipeError) as info:
        load_rows(recipe, path)
    assert time.monotonic() - started < 20
    text = "\n".join(d.format().replace(str(tmp_path) + "/", "") for d in info.value.diagnostics)
    assert re.search(expect, text), text


def test_each_glob_with_a_truncated_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "ok.png").write_bytes(OK_PNG)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "bad.png").write_bytes(TRUNCATED)
    (tmp_path / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError) as info:
        each_rows(load_recipe("recipe.yaml"), "photo=photos/*.png")
    assert "the image data is damaged" in str(info.value)
