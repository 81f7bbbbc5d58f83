"""The ``wanrecipe`` command. The only layer that prints or picks exit codes.

Exit codes: 0 ok, 1 a step failed, 2 invalid recipe or usage (nothing ran), 3 interrupted or
over budget (state saved).
"""

from __future__ import annotations

import click

from .. import __version__

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="wanrecipe")
def main() -> None:
    """Chain Wan 2.1 image edits with YAML recipes.

    Runs on the embedded local emulator by default (free, offline); the paid DashScope service
    is one explicit switch away (--backend dashscope).
    """


def _register() -> None:
    # Each topic registers its commands on `main`; imported here so `main` is complete.
    from . import recipe_cmds, report_cmds, run_cmd, serve_cmd, state_cmds  # noqa: F401


_register()
