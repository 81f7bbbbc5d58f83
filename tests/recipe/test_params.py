from __future__ import annotations

from pathlib import Path

import pytest

from wanrecipe import RecipeError, load_recipe, validate_recipe
from wanrecipe.errors import UsageError
from wanrecipe.recipe.params import parse_assignments

RECIPE = """
version: 1
params:
  photo: {type: image, default: in.png}
  factor: {type: integer, default: 2, minimum: 1, maximum: 4}
  strength: {type: number, default: 0.5, minimum: 0, maximum: 1}
  wm: {type: boolean, default: false}
  style: {type: string, default: ink, enum: [ink, oil]}
steps:
  up:
    function: super_resolution
    image: "{{ params.photo }}"
    prompt: "{{ params.style }}"
    parameters: {upscale_factor: "{{ params.factor }}", watermark: "{{ params.wm }}"}
  st:
    function: stylization_all
    image: "{{ params.photo }}"
    prompt: x
    parameters: {strength: "{{ params.strength }}"}
"""


def test_parse_assignments():
    assert parse_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(UsageError, match="expected name=value"):
        parse_assignments(["novalue"])


def test_command_line_strings_are_converted_to_the_declared_types(write_recipe, tmp_path):
    path = write_recipe(RECIPE)
    recipe = load_recipe(
        path,
        {"factor": "3", "strength": "0.25", "wm": "yes", "style": "oil", "photo": "x.png"},
        check_inputs=False,
    )
    assert recipe.params["factor"] == 3
    assert recipe.params["strength"] == 0.25
    assert recipe.params["wm"] is True
    assert recipe.params["style"] == "oil"
    # -p paths are relative to the working directory, like any command-line path.
    assert recipe.params["photo"] == str(Path.cwd() / "x.png")


def test_defaults_resolve_image_paths_against_the_recipe(write_recipe, tmp_path):
    recipe = load_recipe(write_recipe(RECIPE), check_inputs=False)
    assert recipe.params["photo"] == str(tmp_path / "in.png")
    assert recipe.params["strength"] == 0.5


def test_params_files_yaml_and_json(write_recipe, tmp_path):
    path = write_recipe(RECIPE)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "p.yaml").write_text("factor: 4\nphoto: pic.png\n")
    (tmp_path / "p.json").write_text('{"factor": 1, "style": "ink"}')
    recipe = load_recipe(
        path, {"style": "oil"}, [sub / "p.yaml", tmp_path / "p.json"], check_inputs=False
    )
    assert recipe.params["factor"] == 1  # later files win
    assert recipe.params["style"] == "oil"  # -p wins over files
    assert recipe.params["photo"] == str(sub / "pic.png")  # relative to the params file


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"factor": "9"}, "9 is greater than the maximum of 4"),
        ({"factor": "0"}, "0 is less than the minimum of 1"),
        ({"factor": "two"}, "expected an integer, got 'two'"),
        ({"strength": "lots"}, "expected a number, got 'lots'"),
        ({"wm": "maybe"}, "expected true or false, got 'maybe'"),
        ({"style": "pastel"}, "'pastel' is not one of 'ink', 'oil'"),
        ({"facter": "3"}, "the recipe declares no param 'facter'"),
    ],
)
def test_bad_values_are_reported(write_recipe, given: dict[str, str], message: str):
    report = validate_recipe(write_recipe(RECIPE), given)
    assert [d.message for d in report.errors] == [message]
    assert report.errors[0].file == "command line"


def test_unknown_param_suggests_the_close_one(write_recipe):
    report = validate_recipe(write_recipe(RECIPE), {"facter": "3"})
    assert report.errors[0].hint is not None
    assert report.errors[0].hint.startswith("did you mean 'factor'?")


def test_params_file_problems_point_into_the_file(write_recipe, tmp_path):
    path = write_recipe(RECIPE)
    pfile = tmp_path / "p.yaml"
    pfile.write_text("style: ink\nfactor: 12\n")
    report = validate_recipe(path, None, [pfile])
    (d,) = report.errors
    assert (d.file, d.line, d.message) == (str(pfile), 2, "12 is greater than the maximum of 4")
    pfile.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(path, None, [pfile], check_inputs=False)


def test_required_params(write_recipe):
    path = write_recipe(
        """
        version: 1
        params:
          photo: {type: image}
        steps:
          c: {function: colorization, image: "{{ params.photo }}"}
        """
    )
    report = validate_recipe(path)
    assert [d.message for d in report.errors] == ["no value given and no default"]
    assert load_recipe(path, {"photo": "https://example.com/a.png"}, check_inputs=False).params[
        "photo"
    ] == ("https://example.com/a.png")


def test_messages_never_echo_url_signatures(write_recipe):
    signed = "https://x.example.com/a.png?Signature=SECRET"
    report = validate_recipe(write_recipe(RECIPE), {"factor": signed})
    (d,) = report.errors
    assert "SECRET" not in d.format() and "x.example.com/a.png" in d.message


LIST_RECIPE = """
version: 1
params:
  styles: {type: list, items: {type: string, enum: [ink, oil, gold]}, default: [ink]}
  factors: {type: list, items: {type: integer, minimum: 1, maximum: 4}, default: [2]}
  names: {type: list, default: []}
steps:
  up:
    function: super_resolution
    image: in.png
    prompt: "{{ params.styles | join(' ') }} {{ params.factors }} {{ params.names }}"
"""


def test_list_params_take_commas_flow_lists_and_typed_items(write_recipe, make_image):
    make_image()
    path = write_recipe(LIST_RECIPE)
    recipe = load_recipe(path, {"styles": "ink, gold", "factors": "[1, 4]", "names": ""})
    assert recipe.params == {"styles": ["ink", "gold"], "factors": [1, 4], "names": []}
    assert load_recipe(path).params == {"styles": ["ink"], "factors": [2], "names": []}
    assert load_recipe(path, {"names": '[a, "b,c"]'}).params["names"] == ["a", "b,c"]


def test_list_param_items_are_checked(write_recipe, make_image):
    make_image()
    path = write_recipe(LIST_RECIPE)
    report = validate_recipe(path, {"styles": "ink,watercolor", "factors": "1,9"})
    messages = [d.format() for d in report.errors]
    assert messages == [
        "command line: error: params.factors: item 2: 9 is greater than the maximum of 4\n"
        "  hint: factors is a list of integer items, each between 1 and 4, e.g. a,b or [a, b] "
        "(declared at " + str(path) + ":4)",
        "command line: error: params.styles: item 2: 'watercolor' is not one of 'ink', 'oil', "
        "'gold'\n  hint: styles is a list of string items, each one of 'ink', 'oil', 'gold', "
        "e.g. a,b or [a, b] (declared at " + str(path) + ":3)",
    ]


def test_budget_is_exposed_exactly(write_recipe, make_image):
    from decimal import Decimal

    make_image()
    path = write_recipe(LIST_RECIPE + "budget: {max_usd: 0.1}\n")
    recipe = load_recipe(path)
    assert recipe.budget is not None and recipe.budget.max_usd == Decimal("0.1")
    assert recipe.budget.location.line == 11  # dedented: the leading blank line goes
    assert load_recipe(write_recipe(LIST_RECIPE, "other.yaml")).budget is None
    bad = validate_recipe(write_recipe(LIST_RECIPE + "budget: {max_usd: 0}\n", "bad.yaml"))
    assert not bad.ok and "budget.max_usd" in bad.errors[0].format()
