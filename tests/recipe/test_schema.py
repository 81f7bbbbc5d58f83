from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from wanrecipe import wire
from wanrecipe.recipe.schema import recipe_schema, schema_text
from wanrecipe.recipe.schema_build import render_schema

ROOT = Path(__file__).resolve().parents[2]


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = recipe_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("recipe.schema.json")


def test_shipped_schema_is_the_generated_one():
    # Regenerate with: python -m wanrecipe.recipe.schema_build
    assert schema_text() == render_schema()


def test_top_level_symlink_resolves_to_the_packaged_schema():
    link = ROOT / "schema" / "recipe.schema.json"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "wanrecipe" / "schema" / "recipe.schema.json").resolve()
    assert link.read_text(encoding="utf-8") == schema_text()


def test_every_field_is_documented_for_editors():
    schema = recipe_schema()
    step = schema["$defs"]["step"]
    for name, prop in step["properties"].items():
        target = prop
        if "$ref" in prop:
            target = schema["$defs"][prop["$ref"].rsplit("/", 1)[1]]
        assert target.get("description"), name
    for name, prop in schema["$defs"]["api_parameter"].items():
        assert prop["title"] == name and prop["description"] and prop["examples"]


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(recipe_schema())


def _recipe(step: dict[str, object]) -> dict[str, object]:
    return {"version": 1, "steps": {"s": step}}


@pytest.mark.parametrize("function", wire.FUNCTIONS)
def test_per_function_parameters_match_the_wire_table(function: str):
    v = _validator()
    base: dict[str, object] = {"function": function, "image": "a.png", "prompt": "p"}
    if function in wire.MASK_FUNCTIONS:
        base["mask"] = "m.png"
    for name, spec in wire.PARAMS.items():
        value = spec.maximum if spec.maximum is not None else True
        ok = v.is_valid(_recipe({**base, "parameters": {name: value}}))
        assert ok == (name in wire.FUNCTION_PARAMS[function]), (function, name)


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [("n", 4, 5), ("n", 1, 0), ("seed", 2147483647, 2147483648), ("seed", 0, -1)],
)
def test_ranges(name: str, good: int, bad: int):
    v = _validator()
    step = {"function": "colorization", "image": "a.png"}
    assert v.is_valid(_recipe({**step, "parameters": {name: good}}))
    assert not v.is_valid(_recipe({**step, "parameters": {name: bad}}))


def test_templates_are_allowed_where_numbers_are_expected():
    v = _validator()
    step = {"function": "super_resolution", "image": "a.png", "prompt": "p"}
    assert v.is_valid(_recipe({**step, "parameters": {"upscale_factor": "{{ params.f }}"}}))
    assert not v.is_valid(_recipe({**step, "parameters": {"upscale_factor": "two"}}))


def test_mask_is_required_for_the_mask_function_and_refused_elsewhere():
    v = _validator()
    masked = {"function": "description_edit_with_mask", "image": "a.png", "prompt": ""}
    assert not v.is_valid(_recipe(masked))
    assert v.is_valid(_recipe({**masked, "mask": "m.png"}))
    assert not v.is_valid(_recipe({"function": "colorization", "image": "a", "mask": "m.png"}))


def test_schema_file_is_plain_json():
    json.loads((ROOT / "wanrecipe" / "schema" / "recipe.schema.json").read_text("utf-8"))


def _corpus() -> list[Path]:
    return sorted((ROOT / "recipes").glob("*.yaml")) + sorted(
        (ROOT / "tests" / "recipe" / "broken").glob("*.yaml")
    )


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_split_validation_agrees_with_the_shipped_schema(path: Path):
    # check_document validates steps per function (faster); the verdict must not change.
    from wanrecipe.errors import RecipeError
    from wanrecipe.recipe.loader import load_file
    from wanrecipe.recipe.schema import check_document, full_validator

    try:
        doc = load_file(path)
    except RecipeError:
        return  # not YAML we can load: nothing to compare
    if not isinstance(doc.data, dict) or doc.source.odd_keys:
        return  # not a JSON document: reported before the schema runs
    assert (not check_document(doc)) == full_validator().is_valid(doc.data)
    # And every step, swapped into every function, too.
    for step in (doc.data.get("steps") or {}).values():
        if not isinstance(step, dict):
            continue
        for function in wire.FUNCTIONS:
            variant = {**doc.data, "steps": {"s": {**step, "function": function}}}
            from wanrecipe.recipe.loader import Document, SourceMap

            mutated = Document(variant, SourceMap("x.yaml"))
            assert (not check_document(mutated)) == full_validator().is_valid(variant), function
