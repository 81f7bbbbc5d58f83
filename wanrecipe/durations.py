"""One duration syntax for recipes (``timeout: 10m``) and the command line
(``wanrecipe serve --task-ttl 24h``): ``90`` or ``"90"`` (seconds), ``500ms``, ``90s``,
``10m``, ``1h``, sums such as ``1h30m``, and on the command line ``1d``."""

from __future__ import annotations

import re

DEFAULT_TIMEOUT_SECONDS = 600.0

_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(
    value: str | int | float, *, allow_zero: bool = False, allow_days: bool = False
) -> float:
    """Seconds in ``value``. Raises ValueError for anything else, or a duration <= 0 (< 0
    with ``allow_zero``). Days (``1d``) are for the command line's TTLs (``allow_days``);
    recipes (and their schema) stop at hours."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
            pos = 0
            while pos < len(text):
                m = _PART.match(text, pos)
                if not m or m.end() == pos or (m.group(2) == "d" and not allow_days):
                    raise ValueError(
                        f"{value!r} is not a duration (use 90, 500ms, 90s, 10m, 1h or 1h30m)"
                    ) from None
                seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
                pos = m.end()
            if not text:
                raise ValueError("empty duration") from None
    if not (seconds >= 0 if allow_zero else seconds > 0) or seconds != seconds:
        raise ValueError(f"{value!r}: a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """``75.0`` -> ``"1m15s"``, ``0.5`` -> ``"0.5s"``; for plan output."""
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours}h" if hours else ""
    text += f"{minutes}m" if minutes else ""
    text += f"{secs}s" if secs else ""
    return text
