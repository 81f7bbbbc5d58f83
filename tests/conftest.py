"""Fixtures for the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# No wall clock in property tests: hypothesis's default 200 ms deadline per example and its
# "too slow" health check fail on a busy machine, not on a wrong property.
settings.register_profile("wanrecipe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("wanrecipe")


@pytest.fixture(autouse=True)
def _isolated_state(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test reads or writes a state directory it did not make: a run of the quick start
    leaves `recipes/.wanrecipe/` behind, which must not change what the tests see."""
    monkeypatch.setenv("WANRECIPE_STATE_DIR", str(Path(tmp_path_factory.mktemp("state"))))
    monkeypatch.delenv("WANRECIPE_BACKEND", raising=False)
    monkeypatch.delenv("WANRECIPE_BASE_URL", raising=False)
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
