from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from wanrecipe.cli import main
from wanrecipe.recipe.schema import schema_text

ROOT = Path(__file__).resolve().parents[2]
OLD_PHOTO = str(ROOT / "recipes" / "old-photo.yaml")
BROKEN = ROOT / "tests" / "recipe" / "broken"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_ok():
    result = run("validate", OLD_PHOTO, str(ROOT / "recipes" / "style-fanout.yaml"))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"{OLD_PHOTO}: ok",
        f"{ROOT}/recipes/style-fanout.yaml: ok",
    ]
    assert result.stderr == ""


def test_validate_errors_go_to_stderr_with_exit_2(monkeypatch):
    monkeypatch.chdir(BROKEN)
    result = run("validate", "upscale-too-big.yaml", "cycle.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "upscale-too-big.yaml:14:23: error: steps.upscale.parameters.upscale_factor: "
        "7 is greater than the maximum of 4\n"
        "  hint: upscale_factor must be between 1 and 4\n"
        "cycle.yaml:3:3: error: steps.a: dependency cycle: a -> b -> a\n"
        "  hint: a step cannot use its own output, directly or through other steps; "
        "remove one reference or needs entry\n"
        "2 errors in 2 recipes\n"
    )


def test_validate_warnings_keep_exit_0(monkeypatch):
    monkeypatch.chdir(BROKEN)
    result = run("validate", "unused-param-warning.yaml")
    assert result.exit_code == 0
    assert result.stdout == "unused-param-warning.yaml: ok (1 warning)\n"
    assert "warning: params.style: declared but never used" in result.stderr


def test_validate_json_shape(monkeypatch):
    monkeypatch.chdir(BROKEN)
    result = run("validate", "--json", "n-out-of-range.yaml", "unused-param-warning.yaml")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False
    bad, warned = data["recipes"]
    assert (bad["file"], bad["ok"], bad["errors"], bad["warnings"]) == (
        "n-out-of-range.yaml",
        False,
        1,
        0,
    )
    assert bad["diagnostics"] == [
        {
            "file": "n-out-of-range.yaml",
            "line": 7,
            "column": 21,
            "path": "steps.variants.parameters.n",
            "severity": "error",
            "message": "5 is greater than the maximum of 4",
            "hint": "n must be between 1 and 4",
        }
    ]
    assert warned["ok"] is True and warned["diagnostics"][0]["severity"] == "warning"


def test_validate_with_params():
    assert run("validate", OLD_PHOTO, "-p", "factor=4").exit_code == 0
    result = run("validate", OLD_PHOTO, "-p", "factor=5")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "command line: error: params.factor: 5 is greater than the maximum of 4\n"
    )


def test_bad_param_syntax_is_a_usage_error():
    result = run("plan", OLD_PHOTO, "-p", "factor")
    assert result.exit_code == 2
    assert "-p 'factor': expected name=value" in result.stderr


def test_plan_text():
    result = run("plan", OLD_PHOTO, "-p", "factor=3")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "level 1:\n  colorize" in out
    assert "upscale_factor=3" in out
    assert "3 steps in 3 levels, 3 billed images, est. $0.060210 at $0.020070/image" in out
    assert "shortest wall time: 30s (2 submits/s, 2 tasks at once, ~10s per task)" in out


def test_plan_json_shape(tmp_path: Path):
    params = tmp_path / "p.json"
    params.write_text('{"factor": 4}')
    result = run("plan", OLD_PHOTO, "--params", str(params), "--json", "--concurrency", "1")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {
        "recipe",
        "name",
        "params",
        "levels",
        "steps",
        "billed_images",
        "price_per_image_usd",
        "cost_usd",
        "wall_seconds",
        "quota",
        "warnings",
        "steps_as_written",
        "skipped",
    }
    assert data["params"]["factor"] == 4
    assert [[s["id"] for s in level] for level in data["levels"]] == [
        ["colorize"],
        ["upscale"],
        ["widen"],
    ]
    up = data["levels"][1][0]
    assert up["parameters"] == {"seed": 7, "upscale_factor": 4}
    assert up["needs"] == ["colorize"] and up["images"] == 1
    assert data["cost_usd"] == "0.060210" and data["price_per_image_usd"] == "0.020070"
    assert data["quota"] == {"submit_rps": 2.0, "concurrency": 1, "task_seconds": 10.0}


def test_plan_of_a_broken_recipe(monkeypatch):
    monkeypatch.chdir(BROKEN)
    result = run("plan", "render-out-of-range.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "6 is greater than the maximum of 4" in result.stderr


def test_graph_formats(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "version: 1\nsteps:\n"
        "  a: {function: colorization, image: x.png}\n"
        "  b: {function: colorization, image: x.png, needs: [a]}\n"
        "  end: {function: colorization, image: '{{ steps.a.image }}', needs: b}\n"
    )
    mermaid = run("graph", str(recipe))
    assert mermaid.exit_code == 0
    assert mermaid.stdout == (
        "flowchart LR\n"
        '    s1["a<br/><i>colorization</i>"]\n'
        '    s2["b<br/><i>colorization</i>"]\n'
        '    s3["end<br/><i>colorization</i>"]\n'
        "    s1 -.-> s2\n"
        "    s1 --> s3\n"
        "    s2 -.-> s3\n"
    )
    dot = run("graph", str(recipe), "--format", "dot")
    assert dot.exit_code == 0
    assert '"a" -> "end";' in dot.stdout and '"b" -> "end" [style=dashed];' in dot.stdout
    assert dot.stdout.startswith('digraph "r" {')


def test_graph_of_a_cycle_fails(monkeypatch):
    monkeypatch.chdir(BROKEN)
    result = run("graph", "cycle.yaml")
    assert result.exit_code == 2 and "a -> b -> a" in result.stderr


def test_schema_prints_the_schema():
    result = run("schema")
    assert result.exit_code == 0
    assert result.stdout == schema_text()
    assert json.loads(result.stdout)["title"] == "wanrecipe recipe"


def test_every_command_has_help_with_an_example():
    for command in ("validate", "plan", "graph", "schema"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example:" in result.stdout, command


@pytest.mark.slow
def test_the_installed_entry_point_in_a_subprocess():
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "wanrecipe", "validate", OLD_PHOTO],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{OLD_PHOTO}: ok\n", "")
    bad = subprocess.run(
        [sys.executable, "-m", "wanrecipe", "plan", "cycle.yaml"],
        capture_output=True, text=True, timeout=300, check=False, cwd=BROKEN,
    )  # fmt: skip
    assert bad.returncode == 2 and "dependency cycle: a -> b -> a" in bad.stderr
