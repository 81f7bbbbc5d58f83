from __future__ import annotations

from decimal import Decimal

import pytest

from wanrecipe import RecipeError, plan_recipe, validate_recipe
from wanrecipe.recipe.plan import Quota, estimate_wall_time, format_plan


def test_wall_time_of_simple_shapes():
    assert estimate_wall_time({}) == 0.0
    assert estimate_wall_time({"a": []}) == 10.0
    # Two independent tasks: the second is submitted half a second later (2 submits/s).
    assert estimate_wall_time({"a": [], "b": []}) == 10.5
    # A chain runs one after the other.
    assert estimate_wall_time({"a": [], "b": ["a"], "c": ["b"]}) == 30.0
    # Four independent tasks on two slots: two waves.
    assert estimate_wall_time({k: [] for k in "abcd"}) == 20.5


def test_wall_time_parameters():
    five = {k: [] for k in "abcde"}
    assert estimate_wall_time(five, concurrency=5, submit_rps=1.0, task_seconds=10) == 14.0
    assert estimate_wall_time(five, concurrency=1, task_seconds=2) == 10.0
    with pytest.raises(ValueError, match="cycle"):
        estimate_wall_time({"a": ["b"], "b": ["a"]})


def test_critical_path_goes_first():
    # x1 -> x2 -> x3 is the long chain; y and z are leaves declared first. Starting the chain
    # at once finishes at 30 s (y and z fit beside it); starting y and z first would need 40 s.
    deps = {"y": [], "z": [], "x1": [], "x2": ["x1"], "x3": ["x2"]}
    assert estimate_wall_time(deps) == 30.0


def test_wall_time_never_beats_the_lower_bounds():
    import random

    rng = random.Random(5)
    for _ in range(50):
        n = rng.randint(1, 30)
        deps = {f"s{i}": [f"s{j}" for j in range(i) if rng.random() < 0.1] for i in range(n)}
        longest: dict[str, int] = {}
        for i in range(n):
            longest[f"s{i}"] = 1 + max((longest[d] for d in deps[f"s{i}"]), default=0)
        t = estimate_wall_time(deps)
        assert t >= max(longest.values()) * 10.0
        assert t >= (n // 2) * 10.0
        assert t <= n * 10.0 + n * 0.5


RECIPE = """
version: 1
params:
  photo: {type: image, default: in.png}
  copies: {type: integer, default: 3, minimum: 1, maximum: 4}
steps:
  a:
    function: stylization_all
    image: "{{ params.photo }}"
    prompt: x
    parameters: {n: "{{ params.copies }}"}
  b:
    function: stylization_local
    image: "{{ params.photo }}"
    prompt: y
  c:
    function: expand
    image: "{{ steps.a.images[2] }}"
    prompt: z
    needs: [b]
    parameters: {left_scale: 1.5}
"""


def test_plan_counts_billed_images_and_cost(write_recipe, make_image):
    make_image("in.png")
    plan = plan_recipe(write_recipe(RECIPE))
    assert [[s.id for s in level] for level in plan.levels] == [["a", "b"], ["c"]]
    assert plan.billed_images == 5
    assert plan.cost_usd == Decimal("0.100350")
    assert plan.wall_seconds == 20.5  # c waits for b, submitted half a second after a
    c = plan.levels[1][0]
    assert (c.needs, c.input, c.parameters) == (
        ("a", "b"),
        "steps.a.images[2]",
        {"left_scale": 1.5},
    )
    data = plan.to_dict()
    assert data["billed_images"] == 5 and data["cost_usd"] == "0.100350"
    assert data["levels"][0][0]["input"] == "in.png"
    text = format_plan(plan)
    assert "3 steps in 2 levels, 5 billed images, est. $0.100350" in text
    assert "shortest wall time: 20.5s" in text


def test_plan_with_a_custom_quota(write_recipe, make_image):
    make_image("in.png")
    plan = plan_recipe(write_recipe(RECIPE), quota=Quota(concurrency=1, task_seconds=5))
    assert plan.wall_seconds == 15.0


def test_plan_refuses_bad_local_inputs(write_recipe, make_image):
    make_image("in.png", size=(300, 600))
    with pytest.raises(RecipeError) as info:
        plan_recipe(write_recipe(RECIPE))
    (d,) = info.value.errors
    assert d.message == "in.png: 300x600 px: each side must be between 512 and 4096 px"
    assert d.line == 8  # the first step using it (reported once)


def test_mask_must_match_its_image(write_recipe, make_image):
    make_image("in.png", size=(600, 600))
    make_image("m.png", size=(600, 640), mode="L")
    path = write_recipe(
        """
        version: 1
        steps:
          e:
            function: description_edit_with_mask
            image: in.png
            mask: m.png
        """
    )
    report = validate_recipe(path)
    assert [d.message for d in report.errors] == [
        "the mask is 600x640 px but the image is 600x600 px; they must be the same size"
    ]


def test_files_over_10_mb_are_refused(write_recipe, make_image):
    big = make_image("in.png", size=(600, 600))
    with big.open("ab") as f:  # trailing bytes after IEND: still a PNG, now 11 MB
        f.write(b"\0" * (11 * 1024 * 1024))
    path = write_recipe("version: 1\nsteps:\n  c: {function: colorization, image: in.png}\n")
    report = validate_recipe(path)
    assert [d.message for d in report.errors] == ["in.png: 11.0 MB: images may be at most 10 MB"]


def test_plan_never_shows_url_signatures_or_data_uris(write_recipe, make_image):
    from wanrecipe.images import to_data_uri

    signed = "https://bucket.example.com/in.png?Expires=1&OSSAccessKeyId=AK&Signature=SECRET"
    uri = to_data_uri(make_image("in.png").read_bytes(), "image/png")
    path = write_recipe(
        f"""
        version: 1
        params:
          photo: {{type: image, default: "{signed}"}}
        steps:
          a: {{function: colorization, image: "{{{{ params.photo }}}}"}}
          b: {{function: colorization, image: "{uri}"}}
        """
    )
    plan = plan_recipe(path)
    text = format_plan(plan) + repr(plan.to_dict())
    assert "SECRET" not in text and uri[30:60] not in text
    assert plan.steps[0].input == "https://bucket.example.com/in.png?<redacted>"
