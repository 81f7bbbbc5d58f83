"""Settings parsing."""

from __future__ import annotations

import pytest

from wanrecipe.emulator.config import EmulatorConfig, parse_duration, parse_latency
from wanrecipe.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("90s", 90), ("2s", 2), ("0.5s", 0.5), ("500ms", 0.5), ("10m", 600),
     ("1d", 86400), ("3", 3), (".25s", 0.25)],
)  # fmt: skip
def test_durations(text: str, seconds: float):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "-1s", "1 week", "5x"])
def test_bad_durations(text: str):
    with pytest.raises(UsageError, match="is not a duration"):
        parse_duration(text)


def test_latency():
    assert parse_latency("fast") == "fast"
    assert parse_latency("Realistic") == "realistic"
    assert parse_latency("2.5") == 2.5
    assert parse_latency("3s") == 3.0
    with pytest.raises(UsageError, match="is not a latency"):
        parse_latency("slow")


def test_settings_are_checked():
    with pytest.raises(UsageError, match="concurrency must be >= 0"):
        EmulatorConfig(concurrency=-1)
    with pytest.raises(UsageError, match="TTLs must be > 0"):
        EmulatorConfig(task_ttl=0)
    with pytest.raises(UsageError, match="over_concurrency"):
        EmulatorConfig(over_concurrency="drop")  # type: ignore[arg-type]
