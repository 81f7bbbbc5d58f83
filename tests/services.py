"""Real services for the team-mode tests: a throwaway Postgres cluster and a moto S3 server.

Both listen on 127.0.0.1 only, live in a temp dir and are removed afterwards. They are started
once per test session (once per xdist worker) by the fixtures in `tests/conftest.py`; a test
that needs a clean slate asks for `pg_url` (a fresh database) or `s3_bucket` (a fresh bucket).

A service is skipped, with its reason, only when its programs are not installed; once they are
(CI installs them), a failure to start is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path | None:
    """Debian's versioned server binaries first (its /usr/bin/pg_ctl is a wrapper), then PATH."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if all(Path(d, p).exists() for p in ("initdb", "pg_ctl", "psql")):
            return Path(d)
    found = shutil.which("initdb")
    if found and all((Path(found).parent / p).exists() for p in ("pg_ctl", "psql")):
        return Path(found).parent
    return None


def postgres_missing() -> str | None:
    """Why Postgres cannot start here, or None."""
    if _pg_bindir() is None:
        return "Postgres is not installed (apt-get install postgresql; .ci/run does it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the cluster as"
    return None


@dataclass
class PostgresCluster:
    root: Path
    port: int
    bindir: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = _pg_bindir()
    assert bindir is not None, postgres_missing()
    root = Path(tempfile.mkdtemp(prefix="wanrecipe-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = 0
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        # The port is picked just before the start; several sessions (xdist workers, other
        # suites on the machine) start clusters at once, so one taken meanwhile is retried.
        for tries_left in reversed(range(5)):
            port = free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200"
            )
            started = subprocess.run(
                _as_postgres(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-o",
                        opts,
                        "-w",
                        "-t",
                        "60",
                        "-l",
                        str(root / "log"),
                        "start",
                    ]
                ),
                capture_output=True,
                timeout=120,
            )
            if started.returncode == 0:
                break
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            if "already in use" not in log or not tries_left:
                raise RuntimeError(f"postgres did not start: {started.stderr!r}\n{log[-2000:]}")
        yield PostgresCluster(root=root, port=port, bindir=bindir)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres(
                    [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
                ),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def moto_missing() -> str | None:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return "moto's server is not installed (pip install -e '.[test]')"
    return None


@dataclass
class MotoServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_bucket(self) -> str:
        name = "t-" + uuid.uuid4().hex[:12]
        req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200, resp.status
        return name


_RUNNING_ON = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    # Port 0: the server binds a free port itself and says which (no race with the other
    # sessions starting servers at the same time); its log goes to a file, never a pipe
    # that could fill up.
    log = Path(tempfile.mkdtemp(prefix="wanrecipe-moto-")) / "log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while (found := _RUNNING_ON.search(log.read_bytes())) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start (exit {proc.poll()})")
            time.sleep(0.1)
        yield MotoServer(port=int(found.group(1)), proc=proc)
    finally:
        _stop(proc)
        shutil.rmtree(log.parent, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
