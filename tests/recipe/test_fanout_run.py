"""End to end on the emulator: foreach over n images, a 2x3 matrix and if: make what they say."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from tests.runs import emulator, run_ok
from wanrecipe.api import load_recipe

__all__ = ["emulator"]  # the shared fixture (tests/runs.py): the session's engine pool


def make_image(path: Path) -> None:
    # Four quadrants of different colours, so the engines have structure to work on.
    im = Image.new("RGB", (512, 512), (200, 40, 40))
    im.paste((40, 160, 60), (256, 0, 512, 256))
    im.paste((30, 60, 200), (0, 256, 256, 512))
    im.save(path)


RECIPE = """
version: 1
params:
  strengths: {type: list, items: {type: number, minimum: 0, maximum: 1}, default: [0.2, 0.5, 0.8]}
  upscale: {type: boolean, default: false}
defaults: {seed: 11}
steps:
  gen:
    function: stylization_all
    image: in.png
    prompt: base
    parameters: {n: 4}
  variants:
    foreach: "{{ steps.gen.images }}"
    function: description_edit
    image: "{{ item }}"
    prompt: "variant {{ loop.index }} of {{ loop.length }}"
  grid:
    matrix: {style: [ink wash, gold foil], strength: "{{ params.strengths }}"}
    function: stylization_all
    image: in.png
    prompt: "{{ matrix.style }}"
    parameters: {strength: "{{ matrix.strength }}"}
  up:
    if: params.upscale
    function: super_resolution
    image: "{{ steps.variants.images[0] }}"
    prompt: sharper
  widen:
    function: expand
    image: "{{ steps.up.image }}"
    prompt: wide
    parameters: {left_scale: 1.2}
outputs:
  variants: "{{ steps.variants.images }}"
  grid: "{{ steps.grid.images }}"
  big: "{{ steps.widen.image }}"
"""


@pytest.mark.slow
async def test_foreach_matrix_and_if_on_the_emulator(emulator, tmp_path: Path):
    make_image(tmp_path / "in.png")
    path = tmp_path / "fan.yaml"
    path.write_text(textwrap.dedent(RECIPE), encoding="utf-8")
    record, stats = await run_ok(emulator, load_recipe(path), tmp_path)
    # 1 gen + 4 variants + 6 grid cells were submitted, once each; up and widen never.
    assert stats["submissions"]["accepted"] == 11
    assert stats["billed_images"] == 4 + 4 + 6 == record.images_billed
    assert stats["tasks"]["peak_running"] <= 2

    variants = [record.steps[f"variants.{i}"] for i in range(4)]
    assert [s.state for s in variants] == ["done"] * 4
    assert [s.attempts[0].request["input"]["prompt"] for s in variants] == [
        f"variant {i} of 4" for i in range(1, 5)
    ]
    # Each variant edited a different image of gen: the i-th.
    gen_digests = [r.sha256 for r in record.steps["gen"].results]
    assert len(set(gen_digests)) == 4
    assert [s.fanout for s in variants] == [
        {"group": "variants", "index": i, "item": f"steps.gen.images[{i}]"} for i in range(4)
    ]

    cells = [record.steps[f"grid.{i}"] for i in range(6)]
    sent = [
        (c.attempts[0].request["input"]["prompt"], c.attempts[0].request["parameters"]["strength"])
        for c in cells
    ]
    assert sent == [
        ("ink wash", 0.2),
        ("ink wash", 0.5),
        ("ink wash", 0.8),
        ("gold foil", 0.2),
        ("gold foil", 0.5),
        ("gold foil", 0.8),
    ]
    assert cells[4].fanout == {
        "group": "grid",
        "index": 4,
        "matrix": {"style": "gold foil", "strength": 0.5},
    }

    # if: false skips up, and widen (which needs up's image) with it; both are in the record.
    assert record.steps["up"].state == "skipped"
    assert record.steps["up"].skipped_because == "if: params.upscale is false"
    assert record.steps["widen"].skipped_because == "needs 'up', which is skipped"
    assert not record.steps["up"].attempts

    # Outputs: every instance's images, in instance order; the skipped one is left out.
    run = tmp_path / "run"
    assert record.outputs["variants"] == [str(run / f"variants.{i}.png") for i in range(4)]
    assert record.outputs["grid"] == [str(run / f"grid.{i}.png") for i in range(6)]
    assert "big" not in record.outputs
    for files in record.outputs.values():
        assert all(Path(f).stat().st_size > 0 for f in files)
    on_disk = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert on_disk["steps"]["grid.5"]["fanout"]["matrix"] == {"style": "gold foil", "strength": 0.8}
    assert on_disk["steps"]["widen"]["state"] == "skipped"


@pytest.mark.slow
async def test_if_true_runs_what_was_skipped(emulator, tmp_path: Path):
    make_image(tmp_path / "in.png")
    path = tmp_path / "fan.yaml"
    path.write_text(textwrap.dedent(RECIPE), encoding="utf-8")
    recipe = load_recipe(path, {"upscale": "true", "strengths": "0.4"})
    record, stats = await run_ok(emulator, recipe, tmp_path)
    assert stats["submissions"]["accepted"] == 1 + 4 + 2 + 2
    assert record.steps["widen"].state == "done"
    # up edits the first variant's image.
    up_input = record.steps["up"].attempts[0].request["input"]["base_image_url"]
    assert up_input  # a URL or data URI of variants.0's result
    assert record.outputs["big"] == [str(tmp_path / "run" / "widen.png")]
