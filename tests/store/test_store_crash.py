"""Real crashes: worker processes running the store protocol, killed with SIGKILL at random."""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from wanrecipe.store import StateDir

WORKER = Path(__file__).with_name("store_worker.py")


class Zygote:
    """Forks workers from one warm interpreter (see store_worker.py)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _expect(self, prefix: str) -> list[str]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"worker died: {self.stderr()}")
            if line.startswith(prefix):
                return line.split()[1:]

    def start(self, state: Path, name: str, seed: int) -> int:
        self._send(f"run {state} {name} {seed} 0")
        return int(self._expect("ready")[0])

    def reap(self, pid: int) -> int:
        self._send(f"wait {pid}")
        got_pid, status = self._expect("status")
        assert int(got_pid) == pid
        return int(status)

    def stderr(self) -> str:
        self.close()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed and stream is not self.proc.stderr:
                stream.close()


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    try:
        yield z
    finally:
        z.close()
        if z.proc.stderr:
            z.proc.stderr.close()


def logged(state: Path) -> dict[int, str]:
    """What the workers were told was durable: attempt id -> last acknowledged state."""
    out: dict[int, str] = {}
    for log in state.parent.glob(f"{state.name}.*.log"):
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                out[int(parts[1])] = parts[0]
    return out


def check_consistent(state: Path, verified: set[str]) -> Counter[str]:
    """Everything the brief promises after a crash; returns the count of attempts by state."""
    with StateDir.open(state) as sd:
        raw = sqlite3.connect(state / "state.db")
        try:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            raw.close()
        # No file under a final name holds anything but the bytes it is named after.
        for digest in sd.blobs:
            if digest not in verified:
                assert sd.blobs.verify(digest), f"partial or corrupt blob {digest}"
                verified.add(digest)
        attempts = {a.id: a for a in sd.journal.attempts()}
        for a in attempts.values():
            if a.state == "intent":
                assert (a.task_id, a.submitted_at, a.finished_at, a.results) == (
                    None,
                    None,
                    None,
                    (),
                )
                assert a.dangling and a.owner_alive() is False
                assert a.id in [x.id for x in sd.journal.in_flight(a.key)]
                assert sd.journal.cache_status([a.key])[a.key].status != "miss"
            elif a.state == "submitted":
                assert a.task_id and a.submitted_at and a.finished_at is None and a.results == ()
                assert sd.journal.cache_status([a.key])[a.key].status in ("reattach", "cached")
            elif a.state == "done":
                assert a.task_id and a.finished_at and a.results
                for r in a.results:
                    assert r.sha256 in verified, f"done attempt {a.id} lost blob {r.sha256}"
                    assert sd.blobs.size(r.sha256) == r.size
                hit = sd.journal.lookup_done(a.key)
                assert hit is not None and hit.attempt.finished_at >= a.finished_at
            else:
                assert a.state == "failed" and a.error_code == "InternalError"
        # Whatever a worker was told had been recorded is there, at least that far along.
        later = {
            "intent": {"intent", "submitted", "done", "failed"},
            "submitted": {"submitted", "done", "failed"},
        }
        for aid, step in logged(state).items():
            assert aid in attempts, f"acknowledged attempt {aid} is gone"
            assert attempts[aid].state in later.get(step, {step}), (aid, step, attempts[aid].state)
        return Counter(a.state for a in attempts.values())


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path: Path, zygote: Zygote):
    state = tmp_path / ".wanrecipe"
    rnd = random.Random(20261126)
    verified: set[str] = set()
    dangling_seen = 0
    kills = 0
    started = time.monotonic()
    mid_write = False
    # Kill moments are random: go on (up to 60 rounds) until the kills have landed in every
    # interesting place at least once, so the check below never depends on luck.
    for round_ in range(60):
        # Two workers at once on one state dir, each killed at its own random moment: after
        # a random number of acknowledged store calls (so a busy machine, which only slows
        # the workers down, does not move the kills to the start), plus a few ms.
        names = [f"r{round_}w{w}" for w in range(2)]
        pids = [zygote.start(state, name, rnd.randrange(10**9)) for name in names]
        for name, pid in zip(names, pids, strict=True):
            wait_for_progress(state.parent / f"{state.name}.{name}.log", rnd.randrange(0, 8))
            time.sleep(rnd.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            status = zygote.reap(pid)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
                f"worker ended on its own ({status}) instead of being killed: {zygote.stderr()}"
            )
            kills += 1
        states = check_consistent(state, verified)
        dangling_seen = max(dangling_seen, states["intent"])
        mid_write = mid_write or any((state / "objects" / "tmp").iterdir())
        covered = states["done"] > 0 and states["submitted"] > 0 and dangling_seen > 0
        if kills >= 26 and covered and mid_write:
            break
    elapsed = time.monotonic() - started
    assert kills >= 20
    # The kills landed in the middle of real work, including between intent and submit.
    assert states["done"] > 0 and states["submitted"] > 0 and dangling_seen > 0, states
    assert mid_write, "no kill landed in a blob write"
    print(f"{kills} kills in {round_ + 1} rounds, {elapsed:.1f}s")


def wait_for_progress(log: Path, lines: int) -> None:
    """Until the worker has acknowledged ``lines`` store calls (its log), with a hang guard."""
    end = time.monotonic() + 300
    while (log.read_text().count("\n") if log.exists() else 0) < lines:
        assert time.monotonic() < end, f"no progress in {log.name}"
        time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize("exclusive", [False, True], ids=["plain", "exclusive"])
def test_two_processes_share_one_state_dir(tmp_path: Path, exclusive: bool):
    """Two processes race on a fresh state dir: schema creation, the same keys, the same blobs."""
    state = tmp_path / ".wanrecipe"
    n = 40
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(state),
                name,
                str(seed),
                str(n),
                "--shared",
                f"--barrier={go}",
                *(["--exclusive"] if exclusive else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, seed in (("a", 1), ("b", 2))
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().startswith("ready")
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        for p in procs:  # never leave a worker behind, whatever failed above
            if p.poll() is None:
                p.kill()
                p.communicate()
    verified: set[str] = set()
    states = check_consistent(state, verified)
    with StateDir.open(state) as sd:
        attempts = sd.journal.attempts()
        by_key = Counter(a.key for a in attempts)
        assert len(by_key) == n
        owners = [a.owner_pid for a in attempts]  # in id (commit) order
        switches = sum(1 for x, y in itertools.pairwise(owners) if x != y)
        # Interleaved commits prove the two really wrote at once (a loaded machine may
        # serialise them a lot, so one switch is all that is asked).
        assert switches >= 1, "the two processes did not overlap"
        if exclusive:
            # Never two live submits for one key: a second attempt only after a failure.
            for key in by_key:
                tries = [a.state for a in attempts if a.key == key]
                assert tries in (["done"], ["failed"], ["failed", "done"], ["failed", "failed"]), (
                    tries
                )
            assert sum(states.values()) < 2 * n
        else:
            # Not exclusive (a forced run): both may pay for a key, but the database's
            # one-live-attempt-per-key index lets the second claim it only once the first
            # attempt has finished (the other one got KeyBusy and moved on).
            assert set(by_key.values()) <= {1, 2}
            for key in by_key:
                tries = sorted((a for a in attempts if a.key == key), key=lambda a: a.id)
                for first, second in itertools.pairwise(tries):
                    assert first.finished_at is not None
                    assert second.created_at >= first.finished_at
        assert set(states) <= {"done", "failed"}
        # Both processes stored the same bytes for a shared key's first image: one intact blob.
        first = {}
        for a in attempts:
            if a.state == "done":
                assert first.setdefault(a.key, a.results[0].sha256) == a.results[0].sha256
        assert list((state / "objects" / "tmp").iterdir()) == []
        assert len(list(sd.blobs)) == len(verified)
