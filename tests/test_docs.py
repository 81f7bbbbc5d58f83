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
    for name, command in sorted(main.commands.items()):
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


ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_recipe_listings_match_the_file():
    recipe = (ROOT / "recipes" / "old-photo.yaml").read_text(encoding="utf-8")
    found = 0
    for doc in DOCS:
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            if "\nname: old-photo\n" in block:
                assert block == recipe, f"{doc.name}: the old-photo listing differs from the file"
                found += 1
    assert found >= 1


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_stand_alone(doc):
    """No links outside the repository, and every relative link resolves."""
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{doc.name} points outside the repository"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
