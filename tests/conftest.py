"""Fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests import services
from tests.runs import engine_pool

__all__ = ["engine_pool"]  # one engine pool per session (per xdist worker), see tests/runs.py

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


# Real services for team mode (tests/services.py): one Postgres cluster and one moto S3 server
# per session, started on first use; each test gets a fresh database or bucket.


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[services.PostgresCluster]:
    reason = services.postgres_missing()
    if reason:
        pytest.skip(reason)
    with services.postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: services.PostgresCluster) -> str:
    """A fresh, empty database on the session's cluster: `postgresql://postgres@127.0.0.1:P/t_x`."""
    return pg_cluster.create_database()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[services.MotoServer]:
    reason = services.moto_missing()
    if reason:
        pytest.skip(reason)
    with services.moto_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: services.MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the session's moto server; the env points S3 clients at it.

    Returns `s3://BUCKET`. AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/SECRET and AWS_REGION are set,
    so obstore (and boto) talk only to 127.0.0.1."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    return "s3://" + s3_server.create_bucket()
