"""Batch runs on a real emulator: every row's outputs, records, isolation of a failing row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from wanrecipe import run_batch
from wanrecipe.api import load_recipe
from wanrecipe.batch import BatchGraph, as_rows, execute_batch, load_rows_recipes
from wanrecipe.cli import main
from wanrecipe.errors import RecipeError, UsageError
from wanrecipe.recipe.rows import load_rows, param_declarations
from wanrecipe.runner import BackendChoice

from .conftest import fast_options


def graph_of(recipe: Path, rows_file: Path) -> BatchGraph:
    rows = load_rows(param_declarations(recipe), rows_file)
    return BatchGraph(recipe, load_rows_recipes(recipe, as_rows(rows), load_recipe))


def check_row_dirs(run_dir: Path, keys: list[str]) -> dict:
    top = json.loads((run_dir / "run.json").read_text())
    assert top["kind"] == "batch"
    assert [r["key"] for r in top["rows"]] == keys
    for row in top["rows"]:
        assert row["status"] == "ok", row
        assert row["dir"] == row["key"]
        sub = json.loads((run_dir / row["dir"] / "run.json").read_text())
        assert sub["kind"] == "run" and sub["status"] == "ok"
        assert set(sub["steps"]) == {"color", "style"}
        for step in sub["steps"].values():
            for result in step["results"]:
                # Paths in a row's record are relative to the row's directory.
                assert (run_dir / row["dir"] / result["path"]).stat().st_size == result["size"]
        assert row["outputs"]["final"] == [f"{row['key']}/style.png"]
        assert (run_dir / row["outputs"]["final"][0]).is_file()
    return top


async def test_csv_batch_produces_every_row(emulator, batch_dir, tmp_path):
    recipe = batch_dir(rows=4)
    graph = graph_of(recipe, tmp_path / "rows.csv")
    events = []
    async with emulator() as emu:
        record = await execute_batch(
            graph, backend=BackendChoice("url", emu.base_url), run_dir=tmp_path / "out",
            options=fast_options(), state_dir=tmp_path / "state", on_event=events.append,
        )  # fmt: skip
        stats = emu.stats()
    assert record.status == "ok"
    top = check_row_dirs(tmp_path / "out", ["r1", "r2", "r3", "r4"])
    assert top["images_billed"] == 8 == stats["billed_images"]
    assert stats["submissions"]["accepted"] == 8
    assert stats["tasks"]["peak_running"] <= 2
    # Every step event names its row; one row event per row.
    steps = [e for e in events if e.kind == "step"]
    assert steps and all(e.data["row"] in {"r1", "r2", "r3", "r4"} for e in steps)
    assert sorted(e.data["row"] for e in events if e.kind == "row") == ["r1", "r2", "r3", "r4"]
    assert {e.step for e in steps} == {"color", "style"}


async def test_steps_of_different_rows_interleave(emulator, batch_dir, tmp_path):
    """One scheduler for all rows: a row's second step does not wait for every first step,
    and the first steps of several rows run side by side."""
    recipe = batch_dir(rows=6)
    graph = graph_of(recipe, tmp_path / "rows.csv")
    events = []
    async with emulator(latency=0.5) as emu:
        await execute_batch(
            graph, backend=BackendChoice("url", emu.base_url), run_dir=tmp_path / "out",
            options=fast_options(), state_dir=tmp_path / "state", on_event=events.append,
        )  # fmt: skip
    submitted = [
        (e.data["row"], e.step) for e in events if e.kind == "step" and e.state == "submitted"
    ]
    assert len(submitted) == 12
    # Row by row: r1's style goes before the last rows' first steps (depth first).
    assert submitted.index(("r1", "style")) < submitted.index(("r6", "color"))
    # The first two slots go to the first two rows; which of the two answers first is a race.
    assert set(submitted[:2]) == {("r1", "color"), ("r2", "color")}


def test_glob_batch_on_the_cli(batch_dir, tmp_path, monkeypatch):
    recipe = batch_dir(rows=3)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main,
        ["run", str(recipe), "--each", "photo=pics/*.png", "--out", "out", "-p", "colors=red"],
    )
    assert result.exit_code == 0, result.output
    top = json.loads((tmp_path / "out" / "run.json").read_text())
    assert len(top["rows"]) == 3 and top["status"] == "ok"
    keys = [r["key"] for r in top["rows"]]
    assert len(set(keys)) == 3
    assert all(r["params"]["photo"].endswith(f"p{i}.png") for i, r in enumerate(top["rows"], 1))
    check_row_dirs(tmp_path / "out", keys)
    # Plain lines summarise rows, not steps.
    assert result.output.count(": ok (") == 3
    assert "color: done" not in result.output
    assert (tmp_path / "recipe.batch.lock").is_file()
    # verify checks every row of the batch directory.
    intact = CliRunner().invoke(main, ["verify", "out"])
    assert intact.exit_code == 0, intact.output
    damaged_file = tmp_path / "out" / keys[1] / "style.png"
    damaged_file.unlink()  # a hard link into the store: replace it, never write through it
    damaged_file.write_bytes(b"not the image")
    damaged = CliRunner().invoke(main, ["verify", "out"])
    assert damaged.exit_code == 1, damaged.output
    assert keys[1] in damaged.output


def test_rows_slice_and_limit(batch_dir, tmp_path, monkeypatch):
    recipe = batch_dir(rows=4)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["run", str(recipe), "--batch", "rows.csv", "--rows", "2:4", "--limit", "2",
               "--out", "out", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert sorted({e["row"] for e in events if e.get("event") == "step"}) == ["r2", "r3"]
    assert [r["key"] for r in json.loads((tmp_path / "out" / "run.json").read_text())["rows"]] == [
        "r2",
        "r3",
    ]


async def test_a_failing_row_is_isolated(emulator, batch_dir, tmp_path):
    recipe = batch_dir(rows=3)
    graph = graph_of(recipe, tmp_path / "rows.csv")
    events = []
    async with emulator(faults="task.inspection=first:1") as emu:
        record = await execute_batch(
            graph, backend=BackendChoice("url", emu.base_url), run_dir=tmp_path / "out",
            options=fast_options(), state_dir=tmp_path / "state", on_event=events.append,
        )  # fmt: skip
    assert record.status == "failed"
    statuses = {r.key: r.status for r in record.rows}
    assert sorted(statuses.values()) == ["failed", "ok", "ok"]
    # One row event per row as it ends, its counts running totals of the rows before it.
    rows = [e for e in events if e.kind == "row"]
    assert [e.data["rows_left"] for e in rows] == [2, 1, 0]
    assert rows[-1].data["rows_done"] == 2 and rows[-1].data["rows_failed"] == 1
    done = failed = 0
    for e in rows:
        done += e.state == "ok"
        failed += e.state == "failed"
        assert (e.data["rows_done"], e.data["rows_failed"]) == (done, failed)
    bad = next(r for r in record.rows if r.status == "failed")
    assert "DataInspectionFailed" in (bad.error or "")
    assert bad.outputs == {}
    sub = json.loads((tmp_path / "out" / bad.key / "run.json").read_text())
    assert sub["status"] == "failed"
    assert {s["state"] for s in sub["steps"].values()} == {"failed", "skipped"}


def test_a_failing_row_exits_1_on_the_cli(batch_dir, tmp_path, monkeypatch):
    recipe = batch_dir(rows=2)
    monkeypatch.chdir(tmp_path)
    from wanrecipe.emulator.config import EmulatorConfig
    from wanrecipe.emulator.server import EmulatorThread

    with EmulatorThread(EmulatorConfig(faults="task.inspection=first:1")) as emu:
        result = CliRunner().invoke(
            main, ["run", str(recipe), "--batch", "rows.csv", "--out", "out",
                   "--base-url", emu.base_url],
        )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "1/2 rows ok, 1 failed" in result.output
    assert "DataInspectionFailed" in result.output


async def test_rows_sharing_a_step_pay_for_it_once(emulator, batch_dir, tmp_path):
    """Rows that differ only downstream share their first step: it is submitted once."""
    recipe = batch_dir(rows=1)
    rows = [{"key": "a", "colors": "x"}, {"key": "b", "colors": "x"}, {"key": "c"}]
    loaded = load_rows_recipes(recipe, as_rows(rows), load_recipe)
    async with emulator() as emu:
        record = await execute_batch(
            BatchGraph(recipe, loaded), backend=BackendChoice("url", emu.base_url),
            run_dir=tmp_path / "out", options=fast_options(), state_dir=tmp_path / "state",
        )  # fmt: skip
        stats = emu.stats()
    assert record.status == "ok"
    # a and b are the same request twice: 2 distinct colour steps, 2 distinct style steps.
    assert stats["submissions"]["accepted"] == 4
    # Which of the two identical rows submits each shared step is a race; together they pay
    # for one colour and one style step, and the record counts what the emulator billed.
    assert record.row("a").images_billed + record.row("b").images_billed == 2
    assert record.images_billed == stats["billed_images"]
    assert (tmp_path / "out" / "b" / "style.png").is_file()


def test_run_batch_api_takes_mappings(batch_dir, tmp_path):
    recipe = batch_dir(rows=2)
    record = run_batch(
        recipe,
        [{"photo": str(tmp_path / "pics" / "p1.png")}, {"key": "two", "colors": "red"}],
        run_dir=tmp_path / "out",
        options=fast_options(),
    )
    assert record.status == "ok"
    assert record.rows[1].key == "two"
    assert all((tmp_path / "out" / r.dir / "style.png").is_file() for r in record.rows)


def test_run_batch_reports_every_bad_row_before_sending(batch_dir, tmp_path):
    recipe = batch_dir(rows=1)
    with pytest.raises(RecipeError) as err:
        run_batch(
            recipe,
            [{"key": "a", "photo": "missing-1.png"}, {"key": "b", "photo": "missing-2.png"}],
            run_dir=tmp_path / "out",
        )
    text = "\n".join(d.format() for d in err.value.diagnostics)
    assert "row a" in text and "row b" in text
    assert not (tmp_path / "out").exists()


def test_repeated_keys_are_refused(batch_dir, tmp_path):
    recipe = batch_dir(rows=1)
    with pytest.raises(UsageError, match="repeats"):
        run_batch(recipe, [{"key": "a"}, {"key": "a", "colors": "red"}], run_dir=tmp_path / "o")


def test_bad_cell_exits_2_and_sends_nothing(batch_dir, tmp_path, monkeypatch):
    recipe = batch_dir(rows=2)
    (tmp_path / "rows.csv").write_text("key,photo\nr1,pics/p1.png\nr2,pics/nope.png\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", str(recipe), "--batch", "rows.csv"])
    assert result.exit_code == 2, result.output
    assert "rows.csv:3" in result.output
    assert not Path("runs").exists()


FANOUT = """\
version: 1
name: fan-batch
params:
  photo: {type: image, default: pics/p1.png}
  more: {type: boolean, default: true}
defaults: {seed: 5}
steps:
  color:
    function: colorization
    image: "{{ params.photo }}"
    prompt: blue sky
  styles:
    matrix: {strength: [0.3, 0.7]}
    function: stylization_all
    image: "{{ steps.color.image }}"
    prompt: Convert to French picture book style
    parameters: {strength: "{{ matrix.strength }}"}
  extra:
    if: params.more
    function: colorization
    image: "{{ params.photo }}"
    prompt: warm light
outputs:
  styled: "{{ steps.styles.images }}"
"""


async def test_fanout_and_if_inside_each_row(emulator, batch_dir, tmp_path):
    recipe = batch_dir(rows=2, recipe=FANOUT)
    rows = [{"key": "all", "photo": str(tmp_path / "pics/p1.png")},
            {"key": "less", "photo": str(tmp_path / "pics/p2.png"), "more": False}]  # fmt: skip
    loaded = load_rows_recipes(recipe, as_rows(rows), load_recipe)
    async with emulator() as emu:
        record = await execute_batch(
            BatchGraph(recipe, loaded), backend=BackendChoice("url", emu.base_url),
            run_dir=tmp_path / "out", options=fast_options(), state_dir=tmp_path / "state",
        )  # fmt: skip
        stats = emu.stats()
    assert record.status == "ok", [(r.key, r.error) for r in record.rows]
    assert stats["submissions"]["accepted"] == 4 + 3  # color, styles.0, styles.1 (+ extra)
    assert [r.status for r in record.rows] == ["ok", "ok"]
    for row in record.rows:
        assert row.outputs["styled"] == [f"{row.key}/styles.0.png", f"{row.key}/styles.1.png"]
    sub = json.loads((tmp_path / "out" / "less" / "run.json").read_text())
    assert sub["steps"]["extra"]["state"] == "skipped"
    assert sub["status"] == "ok"
