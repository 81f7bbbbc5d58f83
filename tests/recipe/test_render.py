from __future__ import annotations

from pathlib import Path

import pytest

from wanrecipe import RecipeError, load_recipe, render_step
from wanrecipe.durations import format_duration, parse_duration
from wanrecipe.recipe.render import render_outputs

RECIPE = """
version: 1
params:
  photo: {type: image, default: in.png}
  factor: {type: integer, default: 2, minimum: 1, maximum: 8}
defaults:
  seed: 7
  strength: 0.3
  timeout: 90s
  retry: 2
steps:
  color:
    function: colorization
    image: "{{ params.photo }}"
  up:
    function: super_resolution
    image: "{{ steps.color.image }}"
    prompt: "upscale x{{ params.factor }} of {{ step.id }} in {{ recipe.name }}"
    parameters:
      upscale_factor: "{{ params.factor }}"
      n: 2
    timeout: 1h
    retry: 0
  pick:
    function: stylization_all
    image: "{{ steps.up.images[1] }}"
    prompt: "{{ 'x' * 801 }}"
    parameters: {strength: 0.9}
outputs:
  all: "{{ steps.up.images }}"
  last: "{{ steps.pick.image }}"
"""


class Ref:
    pass


def test_render_uses_the_runner_objects_untouched(write_recipe, tmp_path: Path):
    recipe = load_recipe(write_recipe(RECIPE), check_inputs=False)
    color = render_step(recipe, "color", {})
    assert color.image == tmp_path / "in.png" and color.image.is_absolute()  # type: ignore[union-attr]
    assert color.parameters == {"seed": 7}  # strength not accepted by colorization
    assert color.prompt == "" and color.mask is None
    assert (color.timeout, color.retry, color.attempts) == (90.0, 3, 3)

    ref = Ref()
    up = render_step(recipe, "up", {"color": [ref]})
    assert up.image is ref
    assert up.parameters == {"seed": 7, "upscale_factor": 2, "n": 2}
    assert isinstance(up.parameters["upscale_factor"], int)
    assert up.prompt == "upscale x2 of up in recipe"
    assert (up.timeout, up.retry) == (3600.0, 1)

    a, b = Ref(), Ref()
    pick = render_step(recipe, "pick", {"up": [a, b], "color": [ref]})
    assert pick.image is b
    assert pick.parameters == {"seed": 7, "strength": 0.9}
    (warning,) = pick.warnings
    assert warning.severity == "warning" and "801 characters" in warning.message

    outputs = render_outputs(recipe, {"color": [ref], "up": [a, b], "pick": [b]})
    assert outputs == {"all": [a, b], "last": b}
    # pick failed: its output is left out, the others are still reported.
    assert render_outputs(recipe, {"color": [ref], "up": [a, b]}) == {"all": [a, b]}


def test_out_of_range_after_rendering_raises_with_the_line(write_recipe):
    recipe = load_recipe(write_recipe(RECIPE), {"factor": "6"}, check_inputs=False)
    with pytest.raises(RecipeError) as info:
        render_step(recipe, "up", {"color": [Ref()]})
    (d,) = info.value.errors
    assert d.format() == (
        f"{recipe.file}:19:23: error: steps.up.parameters.upscale_factor: "
        "6 is greater than the maximum of 4\n  hint: upscale_factor must be between 1 and 4"
    )


def test_seed_only_when_given(write_recipe):
    recipe = load_recipe(
        write_recipe("version: 1\nsteps:\n  c: {function: colorization, image: a.png}\n"),
        check_inputs=False,
    )
    step = render_step(recipe, "c", {})
    assert step.parameters == {} and step.retry is None and step.timeout == 600.0


def test_urls_and_data_uris_pass_through_as_strings(write_recipe):
    recipe = load_recipe(
        write_recipe(
            """
            version: 1
            steps:
              a: {function: colorization, image: "https://example.com/x.png"}
              b: {function: colorization, image: "data:image/png;base64,AAAA"}
              c: {function: colorization, image: "../up/x.png"}
            """
        ),
        check_inputs=False,
    )
    assert render_step(recipe, "a", {}).image == "https://example.com/x.png"
    assert render_step(recipe, "b", {}).image == "data:image/png;base64,AAAA"
    assert render_step(recipe, "c", {}).image == recipe.base_dir.parent / "up" / "x.png"


def test_rendering_before_dependencies_finish_is_refused(write_recipe):
    recipe = load_recipe(write_recipe(RECIPE), check_inputs=False)
    with pytest.raises(RecipeError, match="before 'color' finished"):
        render_step(recipe, "up", {})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        (90, 90.0),
        (1.5, 1.5),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        (" 2m 30s ", 150.0),
    ],
)
def test_durations(text: str | float, seconds: float):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10 minutes", "0", "-5", "1d", True, "m"])
def test_bad_durations(text: str | bool):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (0.5, 20.0, 75, 3600, 5400.4)] == [
        "0.5s",
        "20s",
        "1m15s",
        "1h",
        "1h30m",
    ]


def test_load_recipe_renders_every_step_before_returning(write_recipe, make_image):
    # What the runner relies on: a recipe that loads cannot fail later on a parameter or a
    # local input, so nothing is spent on step 1 of a recipe that breaks at step 3.
    make_image("in.png")
    path = write_recipe(RECIPE)
    assert load_recipe(path).warnings[0].message.startswith("801 characters")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, {"factor": "6"})
    assert [d.line for d in info.value.errors] == [19]
    (path.parent / "in.png").unlink()
    with pytest.raises(RecipeError, match=r"in\.png: no such file"):
        load_recipe(path)
    assert load_recipe(path, check_inputs=False).step("up").function == "super_resolution"
