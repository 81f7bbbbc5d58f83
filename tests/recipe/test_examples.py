"""Contract: every recipe in recipes/ validates, plans, and the set covers what the issue asks."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from wanrecipe import load_recipe, plan_recipe, validate_recipe, wire

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
ALL = sorted(RECIPES.glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../schema/recipe.schema.json"


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_example_recipe_is_valid_without_warnings(path: Path):
    report = validate_recipe(path)
    assert report.diagnostics == (), [d.format() for d in report.diagnostics]
    assert path.read_text(encoding="utf-8").splitlines()[0] == MODELINE
    plan = plan_recipe(path)
    assert plan.billed_images >= len(plan.steps) >= 1


def test_one_recipe_per_function_at_least():
    used = {step.function for path in ALL for step in load_recipe(path).steps}
    assert used == set(wire.FUNCTIONS)


def test_the_three_multi_step_examples():
    old = load_recipe(RECIPES / "old-photo.yaml")
    assert [s.function for s in old.steps] == ["colorization", "super_resolution", "expand"]
    assert len(old.levels()) == 3
    product = load_recipe(RECIPES / "product-cleanup.yaml")
    assert [s.function for s in product.steps] == [
        "remove_watermark",
        "description_edit_with_mask",
        "expand",
    ]
    fanout = plan_recipe(RECIPES / "style-fanout.yaml")
    assert len(fanout.levels) == 1 and len(fanout.levels[0]) >= 3
    assert max(s.images for s in fanout.steps) == 4


def test_example_images_are_small_and_within_api_limits():
    images = [p for p in (RECIPES / "images").iterdir() if p.suffix in (".png", ".jpg")]
    assert images
    total = 0
    for path in images:
        with Image.open(path) as im:
            assert all(512 <= side <= 768 for side in im.size), path.name
        total += path.stat().st_size
    assert total < 400 * 1024
