from __future__ import annotations

from pathlib import Path

import pytest

from wanrecipe.errors import RecipeError
from wanrecipe.recipe.loader import load_file, load_text


def test_values_and_keys_have_source_positions():
    doc = load_text("a: 1\nsteps:\n  up:\n    n: [1, 2]\n", "x.yaml")
    assert doc.data == {"a": 1, "steps": {"up": {"n": [1, 2]}}}
    assert doc.source.at(("steps", "up", "n")).line == 4
    assert doc.source.at(("steps", "up", "n", 1)).column == 12
    assert doc.source.key_at(("steps", "up")).line == 3
    # A path that does not exist falls back to its nearest parent.
    assert doc.source.at(("steps", "up", "missing")).line == 4


def test_duplicate_keys_are_refused_with_both_lines():
    with pytest.raises(RecipeError) as info:
        load_text("steps:\n  a: 1\n  b: 2\n  a: 3\n", "x.yaml")
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (4, 3)
    assert d.message == "duplicate key 'a' (first defined on line 2)"


def test_python_tags_are_refused_and_never_executed(tmp_path: Path):
    marker = tmp_path / "pwned"
    text = f'x: !!python/object/apply:os.system ["touch {marker}"]\n'
    with pytest.raises(RecipeError) as info:
        load_text(text, "x.yaml")
    assert "python/object/apply" in info.value.diagnostics[0].message
    assert "never executed" in (info.value.diagnostics[0].hint or "")
    assert not marker.exists()


@pytest.mark.parametrize(
    "tag", ["!!python/name:os.system", "!!python/object:builtins.dict", "!custom 3"]
)
def test_other_tags_are_refused(tag: str):
    with pytest.raises(RecipeError):
        load_text(f"x: {tag}\n", "x.yaml")


def test_syntax_errors_point_at_the_problem():
    with pytest.raises(RecipeError) as info:
        load_text("a: [1, 2\nb: 3\n", "x.yaml")
    d = info.value.diagnostics[0]
    # At the opening bracket (where the fix goes), not where the parser noticed (line 2).
    assert (d.line, d.column) == (1, 4) and d.message.startswith("invalid YAML")
    assert "not closed" in d.message and "line 2" in d.message


def test_merge_keys_still_work():
    doc = load_text("base: &b {n: 1}\nc:\n  <<: *b\n  m: 2\n", "x.yaml")
    assert doc.data["c"] == {"n": 1, "m": 2}


def test_missing_and_undecodable_files(tmp_path: Path):
    with pytest.raises(RecipeError, match="no such file"):
        load_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_file(bad)


def test_recursive_aliases_are_refused_without_hanging():
    with pytest.raises(RecipeError, match="alias to itself") as info:
        load_text("a: &x [1, *x]\n", "x.yaml")
    assert info.value.diagnostics[0].line == 1


def test_keys_of_different_types_are_not_duplicates():
    assert load_text("1: a\n'1': b\n", "x.yaml").data == {1: "a", "1": "b"}


def test_template_errors_in_block_scalars_point_at_their_line(write_recipe):
    from wanrecipe import validate_recipe

    path = write_recipe(
        """
        version: 1
        steps:
          c:
            function: colorization
            image: a.png
            prompt: |
              first line
              second {{ oops( }}
        """
    )
    (d,) = validate_recipe(path).errors
    assert d.line == 8 and "syntax error" in d.message
