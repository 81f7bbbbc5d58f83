"""``--state URL`` / ``WANRECIPE_STATE``: a directory or ``postgresql://...``, on every command
that reads or writes state, the password never shown."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from tests import services
from wanrecipe.cli import main
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.errors import StoreError, UsageError
from wanrecipe.store import StateSpec, open_state, parse_state
from wanrecipe.store.pg_journal import PostgresJournal

RECIPE = """\
    version: 1
    name: two
    steps:
      colorize: {function: colorization, image: in.png, prompt: a valley, parameters: {seed: 3}}
      upscale:
        function: super_resolution
        image: "{{ steps.colorize.image }}"
        prompt: sharper
        parameters: {upscale_factor: 2, seed: 4}
"""


def test_what_a_state_names(tmp_path: Path) -> None:
    default = tmp_path / "default"
    assert parse_state(None, default_dir=default, env={}) == StateSpec("dir", default)
    assert parse_state("some/dir", default_dir=default) == StateSpec("dir", Path("some/dir"))
    assert parse_state(tmp_path, default_dir=default) == StateSpec("dir", tmp_path)
    env = {"WANRECIPE_STATE": "postgres://wan@db/w"}
    spec = parse_state(None, default_dir=default, env=env)
    assert spec == StateSpec("postgres", default, "postgres://wan@db/w")
    url = "postgresql://wan:s3cret@db.example:5432/w?sslmode=require&password=other"
    spec = parse_state(url, default_dir=default)
    assert (spec.kind, spec.path, spec.url) == ("postgres", default, url)
    assert spec.shown == "postgresql://wan@db.example:5432/w?sslmode=require&password=<redacted>"
    with pytest.raises(UsageError, match=r"a state is a directory or a postgresql:// URL") as info:
        parse_state("mysql://root:hunter2@db/w", default_dir=default)
    assert "hunter2" not in str(info.value)


def test_open_state_on_postgres_keeps_images_in_the_local_dir(tmp_path: Path, pg_url: str) -> None:
    with open_state(pg_url, default_dir=tmp_path / "local") as state:
        assert isinstance(state.journal, PostgresJournal)
        assert state.path == tmp_path / "local" and state.url == pg_url  # no password in it
        assert (tmp_path / "local" / "objects").is_dir()
        assert state.blobs.root == tmp_path / "local" / "objects"
        assert state.spec is not None and state.spec.url == pg_url  # for the quota ledger


def test_a_state_not_yet_used_is_not_created_on_request(tmp_path: Path, pg_url: str) -> None:
    with pytest.raises(StoreError, match="nothing has run there yet"):
        open_state(pg_url, default_dir=tmp_path, create=False)
    with pytest.raises(StoreError, match="nothing has run there yet"):
        open_state(tmp_path / "never", default_dir=tmp_path, create=False)
    open_state(pg_url, default_dir=tmp_path).close()
    open_state(pg_url, default_dir=tmp_path, create=False).close()


def test_a_database_password_never_reaches_a_message(tmp_path: Path) -> None:
    url = f"postgresql://wan:s3cret-pw@127.0.0.1:{services.free_port()}/nowhere"
    with pytest.raises(StoreError) as info:
        open_state(url, default_dir=tmp_path)
    assert "s3cret-pw" not in str(info.value)
    assert "postgresql://wan@127.0.0.1:" in str(info.value)
    done = cli("cache", "ls", "--state", url)
    assert done.exit_code == 1 and "s3cret-pw" not in done.output
    assert "postgresql://wan@127.0.0.1" in done.output


def test_first_opens_at_once_create_the_schema_once(tmp_path: Path, pg_url: str) -> None:
    import threading

    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def first_open() -> None:
        barrier.wait()
        try:
            open_state(pg_url, default_dir=tmp_path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_open) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- the CLI ---------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as server:
        yield server


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    Image.new("L", (512, 512), 128).save(tmp_path / "in.png")
    path = tmp_path / "two.yaml"
    path.write_text(textwrap.dedent(RECIPE), encoding="utf-8")
    return path


def test_run_plan_cache_and_verify_on_a_postgres_state(
    recipe: Path, emu: EmulatorThread, pg_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # The marks before anything ran: "nothing has run there yet" is a usage error.
    before = cli("plan", str(recipe), "--state", pg_url)
    assert before.exit_code == 2 and "nothing has run there yet" in before.output
    ran = cli("run", str(recipe), "--base-url", emu.base_url, "--out", str(out), "--state", pg_url)
    assert ran.exit_code == 0, ran.output
    with PostgresJournal(pg_url, open_state(tmp_path / "probe", default_dir=tmp_path).blobs) as j:
        assert sorted((a.step, a.state) for a in j.attempts()) == [
            ("colorize", "done"), ("upscale", "done"),
        ]  # fmt: skip
    marks = cli("plan", str(recipe), "--json", "--state", pg_url)
    assert marks.exit_code == 0, marks.output
    document = json.loads(marks.stdout)
    assert {s["id"]: s["cache"]["status"] for lv in document["levels"] for s in lv} == {
        "colorize": "cached", "upscale": "cached",
    }  # fmt: skip
    assert document["billed_images"] == 0
    listed = cli("cache", "ls", str(recipe), "--state", pg_url)
    assert listed.exit_code == 0, listed.output
    assert "colorize: 1 attempt (1 done), 1 key" in listed.output
    assert "total: 2 attempts (2 done), 2 cached keys" in listed.output
    checked = cli("verify", str(recipe), "--run-dir", str(out), "--state", pg_url)
    assert checked.exit_code == 0, checked.output
    # A second run on the same state pays nothing: every step from the cache.
    again = cli("run", str(recipe), "--base-url", emu.base_url, "--out", str(tmp_path / "o2"),
                "--state", pg_url, "--json")  # fmt: skip
    assert again.exit_code == 0
    record = json.loads((tmp_path / "o2" / "run.json").read_text())
    assert {s["state"] for s in record["steps"].values()} == {"cached"}
    assert emu.stats()["submissions"]["accepted"] == 2
    gone = cli("cache", "gc", "--keep-days", "0", "--state", pg_url)
    assert gone.exit_code == 0, gone.output
    assert gone.output.startswith("removed 2 attempts")
    listed = cli("cache", "ls", "--state", pg_url)
    assert "total: 0 attempts (none)" in listed.output


def test_wanrecipe_state_names_the_state_and_both_flags_are_refused(
    recipe: Path, emu: EmulatorThread, pg_url: str, tmp_path: Path
) -> None:
    env = {"WANRECIPE_STATE": pg_url}
    ran = cli("run", str(recipe), "--base-url", emu.base_url, "--out", str(tmp_path / "o"), env=env)
    assert ran.exit_code == 0, ran.output
    listed = cli("cache", "ls", env=env)
    assert "total: 2 attempts (2 done)" in listed.output
    both = cli("cache", "ls", "--state", pg_url, "--state-dir", str(tmp_path))
    assert both.exit_code == 2 and "give one" in both.output
    other = cli("run", str(recipe), "--state", "redis://127.0.0.1/0")
    assert other.exit_code == 2 and "a state is a directory or a postgresql:// URL" in other.output
    assert emu.stats()["submissions"]["accepted"] == 2


def test_a_directory_state_is_what_it_was(
    recipe: Path, emu: EmulatorThread, tmp_path: Path
) -> None:
    state = tmp_path / "st"
    ran = cli("run", str(recipe), "--base-url", emu.base_url, "--out", str(tmp_path / "o"),
              "--state", str(state))  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert (state / "state.db").is_file()
    listed = cli("cache", "ls", "--state-dir", str(state))
    assert "total: 2 attempts (2 done)" in listed.output


def test_the_python_api_takes_a_state_url(recipe: Path, pg_url: str, tmp_path: Path) -> None:
    from wanrecipe import run_recipe

    first = run_recipe(recipe, run_dir=tmp_path / "r1", state=pg_url)
    again = run_recipe(recipe, run_dir=tmp_path / "r2", state=pg_url)
    assert first.status == again.status == "ok"
    assert {s.state for s in again.steps.values()} == {"cached"}
    with open_state(pg_url, default_dir=tmp_path / "probe", create=False) as state:
        assert len(state.journal.attempts(state="done")) == 2
