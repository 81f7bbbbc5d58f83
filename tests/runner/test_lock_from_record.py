"""The lock file is built from the run record and the journal: the same bytes as working it
out again by rendering every step and reading every input, without doing either."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from wanrecipe.api import load_recipe
from wanrecipe.report.lock import build_lock, dump_lock, write_lock
from wanrecipe.report.record import RunRecord, StepRecord
from wanrecipe.runner import BackendChoice, execute
from wanrecipe.store import StateDir

from .conftest import fast_options

RECIPE = """\
    version: 1
    name: fromrecord
    steps:
      colorize: {function: colorization, image: in.png, prompt: "a valley"}
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: sharper
        parameters: {upscale_factor: 2}
      side: {function: colorization, image: in.png, prompt: side, parameters: {seed: 7}}
"""


async def test_the_lock_needs_neither_a_render_nor_the_inputs(emulator, recipe_file, tmp_path):
    path = recipe_file(RECIPE)
    recipe = load_recipe(path)
    state_dir = tmp_path / "state"
    async with emulator() as emu:
        record = await execute(
            recipe,
            backend=BackendChoice("url", emu.base_url),
            run_dir=tmp_path / "out",
            options=fast_options(),
            state_dir=state_dir,
        )
    assert record.status == "ok"
    step = record.steps["colorize"]
    assert step.prompt == "a valley" and step.parameters is not None
    assert step.inputs is not None and step.inputs["base_image_url"]["source"] == "in.png"
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["steps"]["upscale"]["inputs"]["base_image_url"]["source"] == "steps.colorize"
    with StateDir.open(state_dir) as state:
        from_record = dump_lock(build_lock(recipe, record, state.journal), path.name)
        # The old way: a record without the facts makes the lock render and read again.
        bare = RunRecord(
            **{
                **record.__dict__,
                "steps": {
                    sid: replace(s, prompt=None, parameters=None, inputs=None)
                    for sid, s in record.steps.items()
                },
            }
        )
        worked_out = dump_lock(build_lock(recipe, bare, state.journal), path.name)
        assert from_record == worked_out
        # With the input gone (nothing may read it), the lock is still written, unchanged.
        (path.parent / "in.png").unlink()
        written = write_lock(recipe, record, state.journal)
    assert written is not None and written.read_text() == from_record
    assert isinstance(record.steps["side"], StepRecord)
    assert Path(written).name == "recipe.lock"


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(
            min_codepoint=0x20, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)
        ),
        max_size=30,
    )
    | st.text(max_size=30),
    number=st.floats(allow_nan=False) | st.integers() | st.none() | st.booleans(),
)
def test_the_fast_emitter_writes_the_same_bytes(text: str, number: object) -> None:
    """Whichever emitter writes a lock, its bytes are those of the pure-Python one."""
    import yaml

    document = {
        "version": 1,
        "recipe": text,
        "params": {text[:3] or "p": number},
        "steps": {"a": {"prompt": text, "parameters": {"seed": 7, "x": number}}},
    }
    slow = yaml.dump(
        document,
        Dumper=yaml.SafeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=10_000,
    )
    assert dump_lock(document, "r.yaml").split("\n", 3)[3] == slow
