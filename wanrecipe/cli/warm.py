"""What the end of a run needs (the summary's rich, the report's templates, the lock file's
module) and the CA certificates ``tls.import_aiohttp`` held back, loaded in a background
thread while the run's first tasks run on the service: a run spends most of its time waiting
for tasks, so this moves work out of the wait after the last result rather than adding any."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from ..report.events import Event


def _warm(template: str) -> None:
    from ..tls import load_held_certificates

    load_held_certificates()  # what a plain-HTTP run held back on its way to the first submit
    # Anything failing here fails again, with its real message, where it is needed.
    with contextlib.suppress(Exception):
        import rich.console
        import rich.markup  # noqa: F401

        from ..report import lock  # noqa: F401
        from ..report.html import page, write_report  # noqa: F401
        from . import report_cmds  # noqa: F401

        page.environment().get_template(template)
        page._asset("report.css")
        page._asset("report.js")


class WarmOnFirstSubmit:
    """An event sink that passes everything on to ``sink`` and, at the first submit, starts
    loading the end of the run in a daemon thread."""

    def __init__(self, sink: Any, template: str = "run.html.j2") -> None:
        self.sink = sink
        self._template = template
        self._started = False

    def __call__(self, event: Event) -> None:
        self.sink(event)
        if not self._started and event.kind == "step" and event.state == "submitted":
            self._started = True
            threading.Thread(
                target=_warm, args=(self._template,), name="wanrecipe-warm", daemon=True
            ).start()

    def close(self) -> None:
        self.sink.close()
