"""The ``wanrecipe`` command. The only layer that prints or picks exit codes.

Exit codes: 0 ok, 1 a step failed, 2 invalid recipe or usage (nothing ran), 3 interrupted or
over budget (state saved).

Commands are imported on first use: ``wanrecipe --help`` imports click and nothing else, and
``validate`` never loads the HTTP client, the emulator or rich (``tests/test_startup.py``
pins it). Each topic module registers its commands on ``main`` when it is imported;
``COMMANDS`` says which module holds which command and its one-line help for ``--help``.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 3

#: command -> (module under wanrecipe.cli, one-line help as the command itself gives it).
#: ``tests/test_startup.py`` checks both against the real commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("recipe_cmds", "Check recipes without running them."),
    "plan": ("recipe_cmds", "Show steps, billed images, cost and wall time; run nothing."),
    "graph": ("recipe_cmds", "Print the step graph (Mermaid or dot)."),
    "schema": ("recipe_cmds", "Print the recipe JSON Schema."),
    "run": ("run_cmd", "Run RECIPE: every step, each output feeding the next."),
    "serve": (
        "serve_cmd",
        "Run the local DashScope image-edit emulator (base URL http://HOST:PORT/api/v1).",
    ),
    "report": ("report_cmds", "Rebuild RUN_DIR/report.html from RUN_DIR/run.json."),
    "diff": ("report_cmds", "Compare two runs of a recipe on one page."),
    "verify": ("state_cmds", "Check that a run's outputs (or a lock file's) are intact."),
    "cache": ("state_cmds", "List, prune or empty the stored results."),
}


class LazyGroup(click.Group):
    """A group whose commands live in modules imported only when a command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"{__name__}.{COMMANDS[cmd_name][0]}")
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing from the table, so --help imports no command module.
        names = [n for n in self.list_commands(ctx) if n in COMMANDS or n in self.commands]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in self.commands:
                text = self.commands[name].get_short_help_str(limit)
            else:
                text = _shorten(COMMANDS[name][1], limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def all_commands(self) -> dict[str, click.Command]:
        """Every command, importing every module (for docs and tests)."""
        ctx = click.Context(self)
        found = {name: self.get_command(ctx, name) for name in self.list_commands(ctx)}
        return {name: cmd for name, cmd in found.items() if cmd is not None}


def _shorten(text: str, limit: int) -> str:
    """As click shortens a help line: whole words, then "..."."""
    if len(text) <= limit:
        return text
    words: list[str] = []
    used = 0
    for word in text.split():
        if used + len(word) + (1 if words else 0) + 3 > limit:
            break
        used += len(word) + (1 if words else 0)
        words.append(word)
    return " ".join(words) + "..."


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="wanrecipe")
def main() -> None:
    """Chain Wan 2.1 image edits with YAML recipes.

    Runs on the embedded local emulator by default (free, offline); the paid DashScope service
    is one explicit switch away (--backend dashscope).
    """
