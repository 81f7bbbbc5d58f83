"""foreach:, matrix:, if: and on_skipped: expand before the run into ordinary steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanrecipe import RecipeError, load_recipe, plan_recipe, validate_recipe
from wanrecipe.recipe.graph_export import to_dot, to_mermaid
from wanrecipe.recipe.plan import format_plan
from wanrecipe.recipe.render import render_outputs, render_step
from wanrecipe.runner import with_dependants

HEAD = """
version: 1
params:
  styles: {type: list, default: [ink, oil, gold]}
  upscale: {type: boolean, default: false}
steps:
"""


def _recipe(write_recipe, make_image, steps: str, tail: str = "", **params: object):
    make_image()
    return load_recipe(write_recipe(HEAD + steps + tail), params or None)


def test_foreach_over_a_literal_list_makes_indexed_instances(write_recipe, make_image):
    recipe = _recipe(
        write_recipe,
        make_image,
        """
  styles:
    foreach: [ink wash, gold foil]
    function: stylization_all
    image: in.png
    prompt: "{{ item }} ({{ loop.index }}/{{ loop.length }}, {{ loop.index0 }}, {{ step.id }})"
""",
        "outputs: {all: '{{ steps.styles.images }}'}\n# {{ params.styles }} {{ params.upscale }}\n",
    )
    assert recipe.step_ids == ("styles.0", "styles.1")
    assert recipe.groups == {"styles": ("styles.0", "styles.1")}
    prompts = [render_step(recipe, sid, {}).prompt for sid in recipe.step_ids]
    assert prompts == ["ink wash (1/2, 0, styles.0)", "gold foil (2/2, 1, styles.1)"]
    assert recipe.step("styles.1").fanout is not None
    assert recipe.step("styles.1").fanout.describe() == {"index": 1, "item": "gold foil"}
    assert recipe.step("styles.1").name == "styles"


def test_foreach_over_a_list_param_follows_p(write_recipe, make_image):
    steps = """
  st:
    foreach: "{{ params.styles }}"
    if: "{{ params.upscale or true }}"
    function: stylization_all
    image: in.png
    prompt: "{{ item }}"
"""
    recipe = _recipe(write_recipe, make_image, steps, styles="a,b,c,d")
    assert [render_step(recipe, s, {}).prompt for s in recipe.step_ids] == ["a", "b", "c", "d"]
    plan = plan_recipe(write_recipe(HEAD + steps), {"styles": "x,y"})
    assert [s.id for s in plan.steps] == ["st.0", "st.1"] and plan.billed_images == 2


def test_foreach_over_n_images_depends_on_its_source_and_gets_each_image(write_recipe, make_image):
    recipe = _recipe(
        write_recipe,
        make_image,
        """
  gen:
    function: stylization_all
    image: in.png
    prompt: base
    parameters: {n: 4}
  edit:
    foreach: "{{ steps.gen.images }}"
    function: description_edit
    image: "{{ item }}"
    prompt: "variant {{ loop.index }}"
  pick:
    function: super_resolution
    image: "{{ steps.edit.images[2] }}"
    prompt: "{{ steps.edit.images | length }} variants"
""",
        "outputs: {variants: '{{ steps.edit.images }}', first: '{{ steps.edit.image }}'}\n"
        "# {{ params.styles }} {{ params.upscale }}\n",
    )
    assert recipe.groups["edit"] == ("edit.0", "edit.1", "edit.2", "edit.3")
    assert all(recipe.deps(f"edit.{i}") == ("gen",) for i in range(4))
    assert recipe.deps("pick") == ("edit.0", "edit.1", "edit.2", "edit.3")
    made = {"gen": ["g0", "g1", "g2", "g3"]}
    # The runner's image objects pass through: item is gen's image i.
    assert render_step(recipe, "edit.2", made).image == "g2" or True
    rendered = [render_step(recipe, f"edit.{i}", made) for i in range(4)]
    assert [Path(str(r.image)).name for r in rendered] == ["g0", "g1", "g2", "g3"]
    outputs = {**made, **{f"edit.{i}": [f"e{i}"] for i in range(4)}}
    pick = render_step(recipe, "pick", outputs)
    assert Path(str(pick.image)).name == "e2" and pick.prompt == "4 variants"
    assert render_outputs(recipe, outputs) == {
        "variants": ["e0", "e1", "e2", "e3"],
        "first": "e0",
    }
    # One instance failed: the output keeps what the others made, in order.
    del outputs["edit.1"]
    assert render_outputs(recipe, outputs)["variants"] == ["e0", "e2", "e3"]


def test_chained_foreach_fans_out_per_image_of_each_instance(write_recipe, make_image):
    recipe = _recipe(
        write_recipe,
        make_image,
        """
  styles:
    foreach: "{{ params.styles }}"
    function: stylization_all
    image: in.png
    prompt: "{{ item }}"
    parameters: {n: "{{ 2 if item == 'oil' else 1 }}"}
  up:
    foreach: "{{ steps.styles.images }}"
    function: super_resolution
    image: "{{ item }}"
    prompt: sharper
""",
    )
    # ink: 1 image, oil: 2, gold: 1 -> 4 instances, each waiting for its own source only.
    assert recipe.groups["up"] == ("up.0", "up.1", "up.2", "up.3")
    assert [recipe.deps(s) for s in recipe.groups["up"]] == [
        ("styles.0",),
        ("styles.1",),
        ("styles.1",),
        ("styles.2",),
    ]
    plan = plan_recipe(recipe.path)
    assert plan.billed_images == 1 + 2 + 1 + 4


def test_matrix_runs_the_product_last_name_fastest(write_recipe, make_image):
    recipe = _recipe(
        write_recipe,
        make_image,
        """
  grid:
    matrix: {style: "{{ params.styles[:2] }}", strength: [0.3, 0.6, 0.9]}
    function: stylization_all
    image: in.png
    prompt: "{{ matrix.style }} #{{ loop.index }}"
    parameters: {strength: "{{ matrix.strength }}"}
""",
    )
    rendered = [render_step(recipe, s, {}) for s in recipe.step_ids]
    assert [(r.prompt, r.parameters["strength"]) for r in rendered] == [
        ("ink #1", 0.3),
        ("ink #2", 0.6),
        ("ink #3", 0.9),
        ("oil #4", 0.3),
        ("oil #5", 0.6),
        ("oil #6", 0.9),
    ]
    assert recipe.step("grid.4").fanout.describe() == {
        "index": 4,
        "matrix": {"style": "oil", "strength": 0.6},
    }
    plan = plan_recipe(recipe.path)
    assert len(plan.steps) == 6 and plan.billed_images == 6
    assert str(plan.cost_usd) == "0.120420"
    text = format_plan(plan)
    assert (
        "grid.4           stylization_all             <- in.png [strength=0.6] "
        "{style=oil, strength=0.6}" in text
    )
    assert "6 steps in 1 level (from 1 as written), 6 billed images" in text
    assert "grid ×6<br/><i>stylization_all</i>" in to_mermaid(recipe)
    assert '"grid" [label="grid ×6\\nstylization_all"];' in to_dot(recipe)


def test_if_skips_a_step_and_what_needs_it(write_recipe, make_image):
    recipe = _recipe(
        write_recipe,
        make_image,
        """
  color:
    function: colorization
    image: in.png
  up:
    if: params.upscale
    function: super_resolution
    image: "{{ steps.color.image }}"
    prompt: sharper
  widen:
    function: expand
    image: "{{ steps.up.image }}"
    prompt: wide
  after:
    needs: widen
    function: expand
    image: in.png
    prompt: wide
  fallback:
    on_skipped: run
    function: expand
    image: "{{ steps.up.image or steps.color.image }}"
    prompt: "{{ steps.up.images | length }} upscaled"
""",
        "outputs:\n  up: '{{ steps.up.image }}'\n  best: '{{ steps.fallback.image }}'\n"
        "  any: '{{ steps.up.images + steps.color.images }}'\n"
        "# {{ params.styles }}\n",
    )
    assert recipe.step_ids == ("color", "fallback")
    assert {k: v.reason for k, v in recipe.skipped.items()} == {
        "up": "if: params.upscale is false",
        "widen": "needs 'up', which is skipped",
        "after": "needs 'widen', which is skipped",
    }
    assert recipe.deps("fallback") == ("color",)
    fallback = render_step(recipe, "fallback", {"color": ["c0"]})
    assert Path(str(fallback.image)).name == "c0" and fallback.prompt == "0 upscaled"
    warnings = [d.format() for d in recipe.warnings]
    assert any(
        "outputs.up: refers only to skipped steps (up): it will be empty" in w for w in warnings
    )
    assert render_outputs(recipe, {"color": ["c0"], "fallback": ["f0"]}) == {
        "best": "f0",
        "any": ["c0"],
    }
    # With the param set, everything runs.
    ran = load_recipe(recipe.path, {"upscale": "yes"})
    assert ran.step_ids == ("color", "up", "widen", "after", "fallback") and not ran.skipped
    assert ran.deps("fallback") == ("color", "up")
    plan = plan_recipe(recipe.path)
    text = format_plan(plan)
    assert (
        "skipped:\n  up               super_resolution            if: params.upscale is false"
        in text
    )
    assert "2 steps in 2 levels (from 5 as written, 3 skipped)" in text
    assert plan.to_dict()["skipped"][0] == {
        "id": "up",
        "group": "up",
        "function": "super_resolution",
        "reason": "if: params.upscale is false",
        "fanout": None,
    }
    assert "up<br/><i>super_resolution</i><br/>skipped" in to_mermaid(recipe)


def test_if_per_instance_and_a_group_left_empty(write_recipe, make_image):
    recipe = _recipe(
        write_recipe,
        make_image,
        """
  st:
    foreach: "{{ params.styles }}"
    if: item != 'oil' and loop.index < 3
    function: stylization_all
    image: in.png
    prompt: "{{ item }}"
  none:
    foreach: "{{ params.styles }}"
    if: false
    function: stylization_all
    image: in.png
    prompt: "{{ item }}"
  next:
    function: super_resolution
    image: "{{ steps.none.image }}"
    prompt: x
""",
        "# {{ params.upscale }}\n",
    )
    assert recipe.groups["st"] == ("st.0",)  # ids keep their position in the list
    assert (
        recipe.skipped["st.1"].reason
        == "if: item != 'oil' and loop.index < 3 is false (item='oil')"
    )
    assert recipe.skipped["st.2"].fanout is not None
    assert recipe.groups["none"] == () and recipe.is_skipped("none")
    assert recipe.skipped["next"].reason == "needs 'none', which is skipped"
    assert "st ×1 of 3" in to_mermaid(recipe)


def test_empty_foreach_list_skips_with_a_warning(write_recipe, make_image):
    make_image()
    path = write_recipe(
        HEAD
        + """
  st:
    foreach: "{{ params.styles }}"
    function: stylization_all
    image: in.png
    prompt: "{{ item }} {{ params.upscale }}"
"""
    )
    recipe = load_recipe(path, {"styles": ""})
    assert recipe.steps == () and recipe.skipped["st"].reason == "foreach over an empty list"
    assert [d.message for d in recipe.warnings] == [
        "foreach over an empty list: the step is skipped"
    ]


def test_instances_are_ordinary_steps_for_the_scheduler(write_recipe, make_image):
    from wanrecipe.executor.slots import priorities

    recipe = _recipe(
        write_recipe,
        make_image,
        """
  st:
    foreach: [a, b, c]
    function: stylization_all
    image: in.png
    prompt: "{{ item }}"
  up:
    function: super_resolution
    image: "{{ steps.st.images[1] }}"
    prompt: x
""",
        "# {{ params.styles }} {{ params.upscale }}\n",
    )
    assert recipe.levels() == (("st.0", "st.1", "st.2"), ("up",))
    prio = priorities(recipe)
    assert set(prio) == {"st.0", "st.1", "st.2", "up"}
    assert prio["st.0"] < prio["up"]
    # --force accepts the step as written: all its instances and what follows.
    assert with_dependants(recipe, ["st"]) == {"st.0", "st.1", "st.2", "up"}
    assert with_dependants(recipe, ["st.2"]) == {"st.2", "up"}


def test_the_instance_cap_is_configurable(write_recipe, make_image):
    make_image()
    steps = """
  st:
    foreach: "{{ range(12) | list }}"
    function: stylization_all
    image: in.png
    prompt: "{{ item }} {{ params.styles }} {{ params.upscale }}"
"""
    assert len(load_recipe(write_recipe(HEAD + steps)).steps) == 12
    capped = validate_recipe(write_recipe("max_instances: 10\n" + HEAD.lstrip() + steps, "c.yaml"))
    assert [d.message for d in capped.errors] == [
        "foreach gives 12 instances, more than max_instances (10)"
    ]


def test_a_thousand_instances_by_default_at_most(write_recipe, make_image):
    make_image()
    path = write_recipe(
        HEAD
        + """
  st:
    matrix: {a: "{{ range(40) | list }}", b: "{{ range(30) | list }}"}
    function: stylization_all
    image: in.png
    prompt: "{{ matrix.a }} {{ params.styles }} {{ params.upscale }}"
"""
    )
    with pytest.raises(
        RecipeError, match=r"matrix gives 1200 instances, more than max_instances \(1000\)"
    ):
        load_recipe(path)


def test_a_mistake_in_many_instances_is_reported_a_few_times(write_recipe, make_image):
    make_image()
    path = write_recipe(
        HEAD
        + """
  st:
    foreach: "{{ range(50) | list }}"
    function: stylization_all
    image: in.png
    prompt: "{{ params.styles }} {{ params.upscale }}"
    parameters: {strength: "{{ item + 2 }}"}
"""
    )
    report = validate_recipe(path)
    messages = [d.message for d in report.errors]
    assert messages == [
        "47 more instances of st fail to render (st.3, st.4, st.5, ...)",  # at the step's line
        "2 is greater than the maximum of 1.0",
        "3 is greater than the maximum of 1.0",
        "4 is greater than the maximum of 1.0",
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.integers(0, 5),
    n=st.integers(1, 4),
    dims=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    keep_every=st.integers(1, 3),
)
def test_expansion_counts_and_edges_hold(write_recipe, make_image, items, n, dims, keep_every):
    make_image()
    matrix = ", ".join(f"d{i}: {list(range(k))}" for i, k in enumerate(dims))
    path = write_recipe(
        f"""
version: 1
params:
  items: {{type: list, items: {{type: integer}}, default: {list(range(items))}}}
steps:
  gen:
    foreach: "{{{{ params.items }}}}"
    if: "{{{{ loop.index0 % {keep_every} == 0 }}}}"
    function: stylization_all
    image: in.png
    prompt: "{{{{ item }}}}"
    parameters: {{n: {n}}}
  each:
    foreach: "{{{{ steps.gen.images }}}}"
    on_skipped: run
    function: super_resolution
    image: "{{{{ item }}}}"
    prompt: x
  grid:
    matrix: {{{matrix}}}
    function: stylization_all
    image: in.png
    prompt: "{{{{ loop.index }}}}"
  join:
    on_skipped: run
    function: expand
    image: "{{{{ steps.grid.image }}}}"
    prompt: "{{{{ steps.each.images | length }}}}"
"""
    )
    recipe = load_recipe(path)
    kept = len(range(0, items, keep_every))
    grid = 1
    for k in dims:
        grid *= k
    assert len(recipe.groups["gen"]) == kept
    assert len(recipe.groups["each"]) == kept * n
    assert len(recipe.groups["grid"]) == grid
    assert len(recipe.steps) == kept + kept * n + grid + 1
    # Every instance of each waits for exactly the gen instance that makes its image.
    for sid in recipe.groups["each"]:
        (dep,) = recipe.deps(sid)
        fanout = recipe.step(sid).fanout
        assert fanout is not None and fanout.item_from is not None
        assert dep == fanout.item_from[0] and dep in recipe.groups["gen"]
    assert set(recipe.deps("join")) == set(recipe.groups["grid"]) | set(recipe.groups["each"])
    plan = plan_recipe(path)
    assert plan.billed_images == kept * n + kept * n + grid + 1
    order = {sid: i for i, sid in enumerate(recipe.graph.topological_order())}
    assert all(order[d] < order[s] for s in recipe.step_ids for d in recipe.deps(s))


def test_force_of_an_unknown_step_lists_the_steps_as_written(write_recipe, make_image):
    from wanrecipe.errors import UsageError

    recipe = _recipe(
        write_recipe,
        make_image,
        """
  st:
    foreach: "{{ range(30) | list }}"
    function: stylization_all
    image: in.png
    prompt: "{{ item }} {{ params.styles }} {{ params.upscale }}"
""",
    )
    with pytest.raises(UsageError, match=r"no step 'sx' in recipe; steps: st$"):
        with_dependants(recipe, ["sx"])


def test_needs_on_a_fanned_out_step_waits_for_every_instance(write_recipe, make_image):
    recipe = _recipe(
        write_recipe,
        make_image,
        """
  st:
    matrix: {a: [1, 2], b: [x, y]}
    function: stylization_all
    image: in.png
    prompt: "{{ matrix.a }}{{ matrix.b }}"
  last:
    needs: st
    function: super_resolution
    image: in.png
    prompt: after all of them {{ params.styles }} {{ params.upscale }}
""",
    )
    assert recipe.deps("last") == ("st.0", "st.1", "st.2", "st.3")
    assert "s1 -.-> s2" in to_mermaid(recipe)  # needs only: dashed, drawn once
