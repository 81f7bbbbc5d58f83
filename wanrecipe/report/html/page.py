"""Rendering the report pages: one Jinja environment (autoescaping on), the shared page frame
(inline CSS and JS, a Content-Security-Policy that allows exactly those two), and the writers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ... import __version__

REPORT_NAME = "report.html"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("wanrecipe.report.html", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = _seconds
    env.filters["offset"] = _offset
    return env


@cache
def _asset(name: str) -> str:
    return (files("wanrecipe.report.html") / "templates" / name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render(template: str, kind: str, **context: Any) -> str:
    """A whole page. Its only script and style are ours, allowed by hash: anything a prompt
    could smuggle in would not run even if it escaped the escaping."""
    css, js = _asset("report.css"), _asset("report.js")
    csp = (
        "default-src 'none'; img-src 'self' data: file:; "
        f"style-src {_hash(css)}; script-src {_hash(js)}; "
        "base-uri 'none'; form-action 'none'"
    )
    page_data = {"kind": kind, **context.pop("page_data", {})}
    return (
        environment()
        .get_template(template)
        .render(
            css=Markup(css),
            js=Markup(js),
            csp=csp,
            version=__version__,
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
            page_data=page_data,
            **context,
        )
    )


def write_page(path: Path, text: str) -> Path:
    """Replace ``path`` atomically (a reader never sees half a page). Not fsynced: a page is
    rebuilt from run.json at will, and a batch writes hundreds of them."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "–"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _offset(value: object) -> str:
    return f"+{value:.2f} s" if isinstance(value, int | float) else "–"
