"""The CLI's stderr console: rich's, created (and rich imported) on first use.

A run in a pipe or with ``--json`` prints nothing through it before its first submit, so it
starts without importing rich (tens of ms); the summary at the end loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class StderrConsole:
    """``print`` as rich's ``Console(stderr=True, highlight=False, soft_wrap=True)``."""

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)
