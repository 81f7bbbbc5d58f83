"""The embedded emulator for a ``local`` run: started for the run on 127.0.0.1, port 0, and
from then on just another base URL.

It runs in a child process of the run (``wanrecipe.emulator.child``), started as early as
possible (the CLI starts it before it checks the recipe): its imports and its engine
workers' start then use the machine's other core while this process checks the recipe and
opens its state, instead of adding to the time before the first submit. This process binds
the listening socket and hands it over, so the base URL is known at once; the child serves
until this process closes the pipe to its stdin, which the kernel also does if this process
dies. Where a socket cannot be handed to a child (not POSIX), the emulator runs in this
process, as a thread-free server on the run's own event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable

from ..errors import BackendError
from .choice import BackendChoice

#: How long the end of a run waits for the emulator's process to finish what it serves
#: (a task still computing after a Ctrl-C) before it is killed.
STOP_TIMEOUT_S = 30.0

_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from wanrecipe.emulator.child import main; main(sys.argv[2:])"
)


class EmbeddedEmulatorError(BackendError):
    """The embedded emulator's process is gone before the run could use it."""


class EmbeddedEmulator:
    """The embedded emulator's process, serving on a socket this process bound."""

    def __init__(self) -> None:
        sock = socket.create_server(("127.0.0.1", 0))
        try:
            self.port = int(sock.getsockname()[1])
            # This process's sys.path, as multiprocessing hands it to its children: the child
            # imports the same wanrecipe, however this process found it.
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(sock.fileno())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # never into the run's own output (--json)
                pass_fds=(sock.fileno(),),
                start_new_session=True,  # a Ctrl-C at the terminal is the run's to handle
            )
        finally:
            sock.close()  # the child's copy is the only one: if it dies, connects are refused

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """End of file on its stdin, then wait for it (killed after ``timeout``)."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def gone(self) -> str | None:
        """Why the process is no longer serving (it exited, or was killed), or None."""
        code = self.process.poll()
        if code is None:
            return None
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return (
            f"the embedded emulator's process ended mid-run ({how}): the tasks it was "
            "running are gone with it; nothing is billed on the emulator. Run again (steps "
            "already done come from the cache)"
        )

    def discard(self) -> None:
        """For a run that never used it (an invalid recipe). Stopped as any other (end of
        file, then wait), not killed: a killed emulator would leave its engine workers
        behind."""
        self.stop()


_early: EmbeddedEmulator | None = None
_early_lock = threading.Lock()  # runs started from several threads take one each


def _can_hand_over_sockets() -> bool:
    return os.name == "posix" and bool(sys.executable)


def start_embedded_early(choice: BackendChoice) -> None:
    """For the local backend: start the embedded emulator now, so it is up by the first
    submit (the CLI calls this before it checks the recipe; ``discard_early`` after)."""
    global _early
    if choice.kind == "local" and _can_hand_over_sockets():
        with _early_lock:
            if _early is None:
                _early = EmbeddedEmulator()


def discard_early() -> None:
    """Stop an emulator started early that no run took (the recipe was invalid)."""
    early = _take_early()
    if early is not None:
        early.discard()


def _take_early() -> EmbeddedEmulator | None:
    global _early
    with _early_lock:
        early, _early = _early, None
    return early


@contextlib.asynccontextmanager
async def open_backend(choice: BackendChoice) -> AsyncIterator[str]:
    """Yield the base URL to talk to, starting the embedded emulator for ``local``."""
    async with open_watched_backend(choice) as (base_url, _gone):
        yield base_url


@contextlib.asynccontextmanager
async def open_watched_backend(
    choice: BackendChoice,
) -> AsyncIterator[tuple[str, Callable[[], str | None] | None]]:
    """``open_backend``, with a probe saying why the backend has stopped serving (the
    embedded emulator's process ended), or None while it serves; no probe (None) for a
    server whose process is not this run's."""
    if choice.kind != "local":
        assert choice.base_url
        yield choice.base_url, None
        return
    if not _can_hand_over_sockets():
        async with _in_process() as base_url:
            yield base_url, None
        return
    import asyncio

    emulator = _take_early() or EmbeddedEmulator()
    code = emulator.process.poll()
    if code is not None:  # it could not start: say so now, not after retries on refusals
        emulator.stop()
        raise EmbeddedEmulatorError(
            "EmulatorNotStarted",
            f"the embedded emulator's process exited at once (exit code {code}); its error "
            "is printed above",
        )
    try:
        yield emulator.base_url, emulator.gone
    finally:
        await asyncio.to_thread(emulator.stop)


@contextlib.asynccontextmanager
async def _in_process() -> AsyncIterator[str]:
    from ..emulator.config import EmulatorConfig
    from ..emulator.server import running_emulator

    async with running_emulator(EmulatorConfig()) as emu:
        yield emu.base_url
