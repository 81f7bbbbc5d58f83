"""One Postgres state, every component on it: the quota ledger connects where the journal does
(the password included), while nothing shows the password."""

from __future__ import annotations

from pathlib import Path

from wanrecipe.executor.ledger import ledger_home
from wanrecipe.store import open_state


def test_the_ledger_shares_the_journals_database_password_and_all(
    pg_url: str, tmp_path: Path, s3_bucket: str
) -> None:
    with_password = pg_url.replace("postgres@", "postgres:hunter2@", 1)
    with open_state(with_password, default_dir=tmp_path / "local", blobs=s3_bucket) as state:
        assert ledger_home(state) == with_password  # the ledger's own connection can log in
        assert "hunter2" not in state.url and "hunter2" not in repr(state)
        assert state.blobs.location == s3_bucket
        assert state.path == tmp_path / "local"
    with open_state(tmp_path / "dir", default_dir=tmp_path / "local") as state:
        assert ledger_home(state) == tmp_path / "dir"
