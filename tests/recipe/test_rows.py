"""Batch rows: rows files, --each globs, selection, keys; golden messages for every error.

Each file in rows/ (but recipe.yaml) is a broken rows file for rows/recipe.yaml; its
``.expected`` holds the exact messages. Regenerate with ``WANRECIPE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from wanrecipe.errors import RecipeError, UsageError
from wanrecipe.recipe.rows import (
    BatchRow,
    RowRange,
    each_rows,
    load_rows,
    param_declarations,
)

ROWS = Path(__file__).parent / "rows"
RECIPE = ROWS / "recipe.yaml"
CASES = sorted(
    p.name for p in ROWS.iterdir() if p.is_file() and p.suffix != ".expected" and p != RECIPE
)
UPDATE = os.environ.get("WANRECIPE_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("name", CASES)
def test_broken_rows_messages(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROWS)  # messages name the file as the user gave it
    with pytest.raises(RecipeError) as caught:
        load_rows(param_declarations("recipe.yaml"), name)
    text = "".join(d.format() + "\n" for d in caught.value.diagnostics)
    expected = ROWS / (name + ".expected")
    if UPDATE:
        expected.write_text(text, encoding="utf-8")
    assert text == expected.read_text(encoding="utf-8")
    assert all(d.severity == "error" for d in caught.value.diagnostics)


def _batch(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    for image in ("ok.png", "ok2.png"):
        shutil.copy(ROWS / "images" / image, tmp_path / "images" / image)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_are_typed_like_p_values(tmp_path: Path):
    path = _batch(
        tmp_path,
        "rows.csv",
        'photo,factor,styles,night\nimages/ok.png,3,"ink,gold",yes\nimages/ok2.png,,oil,off\n',
    )
    rows = load_rows(param_declarations(RECIPE), path)
    assert [r.index for r in rows] == [1, 2]
    first, second = rows
    assert first.params == {
        "photo": str(tmp_path / "images" / "ok.png"),  # relative to the rows file
        "factor": 3,
        "styles": ["ink", "gold"],
        "night": True,
    }
    # An empty cell is "not given": the default (or -p) applies.
    assert second.params == {
        "photo": str(tmp_path / "images" / "ok2.png"),
        "styles": ["oil"],
        "night": False,
    }
    assert first.origin.file == str(path) and first.origin.line == 2
    assert second.origin.line == 3


def test_yaml_and_jsonl_rows_have_their_lines(tmp_path: Path):
    yaml_path = _batch(
        tmp_path,
        "rows.yaml",
        "# two rows\n- photo: images/ok.png\n  factor: 4\n\n- {photo: images/ok2.png}\n",
    )
    rows = load_rows(param_declarations(RECIPE), yaml_path)
    assert [(r.origin.line, r.params.get("factor")) for r in rows] == [(2, 4), (5, None)]
    jsonl = _batch(
        tmp_path, "rows.jsonl", '\n{"photo": "images/ok.png", "styles": ["oil", "gold"]}\n'
    )
    (row,) = load_rows(param_declarations(RECIPE), jsonl)
    assert row.origin.line == 2 and row.params["styles"] == ["oil", "gold"]


def test_derived_keys_are_readable_stable_and_ignore_column_order(tmp_path: Path):
    a = _batch(tmp_path, "a.csv", "photo,factor\nimages/ok.png,3\nimages/ok2.png,3\n")
    b = _batch(tmp_path, "b.csv", "factor,photo\n3,images/ok.png\n3,images/ok2.png\n")
    keys_a = [r.key for r in load_rows(param_declarations(RECIPE), a)]
    keys_b = [r.key for r in load_rows(param_declarations(RECIPE), b)]
    assert keys_a == keys_b
    assert keys_a[0].startswith("ok-3-") and keys_a[1].startswith("ok2-3-")
    assert len(set(keys_a)) == 2
    # The same rows elsewhere on disk (another machine) give the same keys: paths are hashed
    # as written, never resolved.
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = _batch(other, "a.csv", a.read_text(encoding="utf-8"))
    assert [r.key for r in load_rows(param_declarations(RECIPE), moved)] == keys_a
    # A different value gives a different key.
    c = _batch(tmp_path, "c.csv", "photo,factor\nimages/ok.png,4\n")
    assert load_rows(param_declarations(RECIPE), c)[0].key != keys_a[0]
    for key in keys_a:
        assert key == key.lower() and all(ch.isalnum() or ch == "-" for ch in key)


def test_key_column_names_the_row_and_is_not_a_param(tmp_path: Path):
    path = _batch(tmp_path, "rows.csv", "key,photo\nfront,images/ok.png\nback.v2,images/ok2.png\n")
    rows = load_rows(param_declarations(RECIPE), path)
    assert [r.key for r in rows] == ["front", "back.v2"]
    assert "key" not in rows[0].params


def test_rows_and_limit_select_by_1_based_inclusive_position(tmp_path: Path):
    lines = "".join(f"images/ok.png,{i % 4 + 1},{'ink' if i % 2 else 'oil'}\n" for i in range(10))
    path = _batch(tmp_path, "rows.csv", "photo,factor,style\n" + lines)
    decls = param_declarations(RECIPE)
    assert [r.index for r in load_rows(decls, path, rows="3:5")] == [3, 4, 5]
    assert [r.index for r in load_rows(decls, path, rows="9:")] == [9, 10]
    assert [r.index for r in load_rows(decls, path, rows=":2")] == [1, 2]
    assert [r.index for r in load_rows(decls, path, rows="7")] == [7]
    assert [r.index for r in load_rows(decls, path, rows="2:", limit=3)] == [2, 3, 4]
    assert [r.index for r in load_rows(decls, path, limit=1)] == [1]
    with pytest.raises(RecipeError, match="selects no row: there are 10"):
        load_rows(decls, path, rows="11:20")


def test_only_selected_rows_are_checked(tmp_path: Path):
    path = _batch(tmp_path, "rows.csv", "photo,factor\nimages/ok.png,2\nimages/ok.png,nine\n")
    assert len(load_rows(param_declarations(RECIPE), path, rows="1")) == 1
    with pytest.raises(RecipeError, match=r"rows\.csv:3: error: column factor"):
        load_rows(param_declarations(RECIPE), path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10:3", "the first row is after the last"),
        ("0:3", "numbered from 1"),
        ("a:b", "expected A:B"),
    ],
)
def test_bad_row_ranges_are_usage_errors(text: str, message: str):
    with pytest.raises(UsageError, match=message):
        RowRange.parse(text)


def test_bad_limit_is_a_usage_error(tmp_path: Path):
    path = _batch(tmp_path, "rows.csv", "photo\nimages/ok.png\n")
    with pytest.raises(UsageError, match="--limit 0"):
        load_rows(param_declarations(RECIPE), path, limit=0)


def test_supplied_params_satisfy_required_ones(tmp_path: Path):
    path = _batch(tmp_path, "rows.csv", "factor\n2\n3\n")
    with pytest.raises(RecipeError, match="no value for param 'photo'"):
        load_rows(param_declarations(RECIPE), path)
    rows = load_rows(param_declarations(RECIPE), path, supplied={"photo"})
    assert [r.params for r in rows] == [{"factor": 2}, {"factor": 3}]


def test_each_runs_once_per_matching_file_sorted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("b.png", "a.png", "sub/c.png"):
        shutil.copy(ROWS / "images" / "ok.png", photos / name)
    (photos / "notes.txt").write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    rows = each_rows(param_declarations(RECIPE), "photo=photos/*.png")
    assert [r.params["photo"] for r in rows] == [
        str(photos / "a.png"),
        str(photos / "b.png"),
    ]
    assert [r.origin.file for r in rows] == ["photos/a.png", "photos/b.png"]
    assert rows[0].key.startswith("a-") and rows[1].key.startswith("b-")
    deep = each_rows(param_declarations(RECIPE), "photo=photos/**/*.png", limit=5)
    assert [Path(r.origin.file).name for r in deep] == ["a.png", "b.png", "c.png"]
    # cwd= is where the glob and the paths are relative to.
    elsewhere = each_rows(param_declarations(RECIPE), "photo=*.png", cwd=photos)
    assert [r.params["photo"] for r in elsewhere] == [str(photos / "a.png"), str(photos / "b.png")]


def test_each_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "x.png").write_text("not an image", encoding="utf-8")
    decls = param_declarations(RECIPE)
    with pytest.raises(UsageError, match="expected NAME=GLOB"):
        each_rows(decls, "photos/*.png")
    with pytest.raises(RecipeError) as caught:
        each_rows(decls, "photo=photos/*.jpg")
    assert caught.value.diagnostics[0].format() == (
        "--each photo=photos/*.jpg: error: no file matches\n"
        "  hint: quote the pattern so the shell does not expand it: --each photo='photos/*.jpg'"
    )
    with pytest.raises(RecipeError, match="photos is a directory"):
        each_rows(decls, "photo=photos")
    with pytest.raises(RecipeError) as caught:
        each_rows(decls, "phot=photos/*.png", supplied={"photo"})
    assert "the recipe declares no param 'phot'" in str(caught.value)
    assert "did you mean 'photo'?" in (caught.value.diagnostics[0].hint or "")
    with pytest.raises(RecipeError) as caught:
        each_rows(decls, "photo=photos/*.png")
    assert (
        caught.value.diagnostics[0]
        .format()
        .startswith(
            "--each photo=photos/*.png: error: column photo: photos/x.png: not a readable image"
        )
    )


def test_rows_take_a_loaded_recipe_too(tmp_path: Path):
    from wanrecipe import load_recipe

    image = _batch(tmp_path, "rows.csv", "photo,factor\nimages/ok.png,4\n")
    recipe = load_recipe(RECIPE, {"photo": str(ROWS / "images" / "ok.png")})
    (row,) = load_rows(recipe, image)
    assert isinstance(row, BatchRow) and row.params["factor"] == 4


def test_unknown_file_type_and_missing_file(tmp_path: Path):
    decls = param_declarations(RECIPE)
    with pytest.raises(RecipeError, match=r"unknown rows file type '\.txt'"):
        load_rows(decls, tmp_path / "rows.txt")
    with pytest.raises(RecipeError, match="no such file"):
        load_rows(decls, tmp_path / "rows.csv")


def test_tsv_with_a_bom_and_json_lists(tmp_path: Path):
    tsv = _batch(tmp_path, "rows.tsv", "\ufeffphoto\tstyles\nimages/ok.png\tink, oil\n")
    (row,) = load_rows(param_declarations(RECIPE), tsv)
    assert row.params["styles"] == ["ink", "oil"] and row.origin.line == 2
    as_json = _batch(
        tmp_path, "rows.json", '[\n  {"photo": "images/ok.png", "night": true, "factor": 1}\n]\n'
    )
    (row,) = load_rows(param_declarations(RECIPE), as_json)
    assert row.params == {"photo": str(tmp_path / "images" / "ok.png"), "night": True, "factor": 1}
    assert row.origin.line == 2


def test_a_rows_file_elsewhere_resolves_images_beside_it(tmp_path: Path, monkeypatch):
    sub = tmp_path / "batch"
    sub.mkdir()
    _batch(sub, "rows.csv", "photo\nimages/ok.png\n")
    monkeypatch.chdir(tmp_path)
    (row,) = load_rows(param_declarations(RECIPE), "batch/rows.csv")
    assert row.params["photo"] == str(sub / "images" / "ok.png")
    assert row.origin.file == "batch/rows.csv"


def test_row_values_build_the_recipe_and_point_at_their_cells(tmp_path: Path):
    from wanrecipe.recipe.build import build_recipe
    from wanrecipe.recipe.loader import load_file

    path = _batch(tmp_path, "rows.csv", "photo,factor\nimages/ok.png,3\n")
    (row,) = load_rows(param_declarations(RECIPE), path)
    recipe, problems = build_recipe(load_file(RECIPE), RECIPE, row.given())
    assert not [d for d in problems if d.severity == "error"]
    assert recipe is not None and recipe.params["factor"] == 3
    assert recipe.params["photo"] == str(tmp_path / "images" / "ok.png")
    assert {g.name: g.location.line for g in row.given()} == {"photo": 2, "factor": 2}
