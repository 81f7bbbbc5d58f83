"""Each command imports only what it needs (checked in a real subprocess, by module names,
never by timing): the help, validate, plan, graph and schema load neither the HTTP client
(aiohttp), nor the emulator, nor rich."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from wanrecipe.cli import COMMANDS, main

RECIPES = Path(__file__).parents[1] / "recipes"
HEAVY = ("aiohttp", "rich", "wanrecipe.emulator", "wanrecipe.backends")

PROBE = """
import sys
from wanrecipe.cli import main
try:
    main(sys.argv[1:], prog_name="wanrecipe", standalone_mode=False)
except SystemExit:
    pass
import json
sys.stderr.flush()
print("\\nMODULES=" + json.dumps(sorted(sys.modules)))
"""


def modules_after(args: list[str], cwd: Path) -> tuple[set[str], str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("MODULES=")]
    assert line, proc.stdout + proc.stderr
    return set(json.loads(line[0].removeprefix("MODULES="))), proc.stdout


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


@pytest.mark.parametrize(
    "args",
    [
        ["validate", str(RECIPES / "old-photo.yaml")],
        ["plan", str(RECIPES / "old-photo.yaml")],
        ["graph", str(RECIPES / "style-fanout.yaml")],
        ["schema"],
    ],
    ids=lambda a: a[0],
)
def test_checking_commands_load_no_client_server_or_rich(args, tmp_path):
    modules, _ = modules_after(args, tmp_path)
    assert "wanrecipe.recipe.build" in modules or args[0] == "schema"  # the command ran
    assert heavy(modules) == []


def test_help_loads_no_command_module(tmp_path):
    modules, out = modules_after(["--help"], tmp_path)
    assert "Commands:" in out
    assert not [m for m in modules if m.startswith("wanrecipe.") and m != "wanrecipe.cli"]
    assert heavy(modules) == []


def test_run_does_load_the_client(tmp_path):
    # The probe sees what a command imports: `run --help` reaches the run module.
    modules, _ = modules_after(["run", "--help"], tmp_path)
    assert "wanrecipe.cli.run_cmd" in modules


def test_the_lazy_table_matches_the_commands():
    commands = main.all_commands()
    assert set(commands) == set(COMMANDS)
    for name, (module, short) in COMMANDS.items():
        command = commands[name]
        assert command.callback is not None
        assert command.callback.__module__ == f"wanrecipe.cli.{module}", name
        assert command.get_short_help_str(limit=200) == short, name
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)


#: What the embedded emulator's own process loads, never the run's (it starts that process
#: first and goes on checking the recipe: docs/speed.md).
SERVER_SIDE = (
    "aiohttp.web",
    "aiohttp.web_app",
    "wanrecipe.emulator.app",
    "wanrecipe.emulator.server",
    "wanrecipe.emulator.engines.common",
    "numpy",
    "cv2",
)


def test_a_run_on_the_embedded_emulator_loads_no_server_and_no_engine(tmp_path):
    from tests.runs import make_image

    make_image(tmp_path / "in.png")
    (tmp_path / "r.yaml").write_text(
        "version: 1\nname: r\nsteps:\n"
        "  a: {function: remove_watermark, image: in.png, prompt: x}\n"
        "  b: {function: remove_watermark, image: '{{ steps.a.image }}', prompt: y}\n",
        encoding="utf-8",
    )
    modules, out = modules_after(["run", "r.yaml", "--json", "--out", "o"], tmp_path)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "ok", out
    assert (tmp_path / "o" / "b.png").is_file()
    assert "aiohttp" in modules  # the client, to talk to the emulator's process
    assert sorted(m for m in modules if m.startswith(SERVER_SIDE)) == []


def test_the_blobs_option_spells_the_stores_variable():
    from wanrecipe.cli import blobs_option
    from wanrecipe.store import blobs_url

    assert blobs_option.ENV_VAR == blobs_url.ENV_VAR


def test_the_lazy_runner_package_still_names_its_functions():
    """``runner.execute`` is the function even after its module was imported first."""
    code = (
        "import inspect, wanrecipe.runner.session, wanrecipe.runner.execute\n"
        "from wanrecipe.runner import execute, run_recipe, open_session\n"
        "import wanrecipe.runner as runner\n"
        "print(inspect.iscoroutinefunction(execute), runner.execute is execute,\n"
        "      callable(run_recipe), callable(open_session))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["True", "True", "True", "True"], done.stderr


def test_the_run_command_module_imports_neither_aiohttp_nor_the_recipe_machinery(tmp_path):
    """So `run` can start the emulator's process first and import aiohttp its own way
    (tls.import_aiohttp) after it: both happen in the command's body."""
    modules, _ = modules_after(["run", "--help"], tmp_path)
    assert "wanrecipe.cli.run_cmd" in modules
    assert heavy(modules) == []
    assert not [m for m in modules if m.startswith(("wanrecipe.recipe", "jsonschema", "jinja2"))]
