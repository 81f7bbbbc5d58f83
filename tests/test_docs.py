"""Every command is documented: in the README, and with an example in its --help."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wanrecipe.cli import main

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
HEADINGS = [line for line in README.splitlines() if line.startswith("#")]


def commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(main.all_commands().items()):
        found.append((name,))
        if isinstance(command, click.Group):
            found.extend((name, sub) for sub in sorted(command.commands))
    return found


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_command_is_in_the_readme(path):
    name = path[0]
    assert any(f"`wanrecipe {name}" in heading for heading in HEADINGS), (
        f"README.md has no heading for `wanrecipe {name}`"
    )
    if len(path) == 2:
        assert re.search(rf"wanrecipe {name} .*\b{path[1]}\b", README), " ".join(path)


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_command_help_has_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, f"wanrecipe {' '.join(path)} --help shows no example"


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [line for line in block.strip().splitlines() if line.strip()]
    assert len(lines) == 2
    assert "wanrecipe run recipes/" in lines[0]
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert lines[1] in ci
