"""The embedded emulator's own process: ``python -m wanrecipe.emulator.child FD``.

A run on the ``local`` backend starts this process as the very first thing it does and goes
on checking the recipe meanwhile: the emulator's imports (aiohttp's server, the app) and its
engine workers' start then take the machine's other core instead of adding to the time
before the first submit. The run binds the listening socket (127.0.0.1, port 0) itself and
hands it over as file descriptor ``FD``, so it knows the base URL at once; a request sent
before this process serves waits in the socket's backlog.

The process serves until its stdin reaches end of file: the run closes it when it is done,
and the kernel closes it when the run dies, however it dies, so the emulator never outlives
its run. It sits in a session of its own (a Ctrl-C at the terminal is the run's to handle:
tasks in flight keep being served while the run stops cleanly) and ignores SIGINT.
"""

from __future__ import annotations

import asyncio
import mimetypes
import signal
import socket
import sys

from .. import tls
from .config import EmulatorConfig
from .early import EarlyEngines
from .pool import make_executor


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        raise SystemExit("usage: python -m wanrecipe.emulator.child FD (a listening socket)")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    config = EmulatorConfig()
    # The engine workers start once the server serves: started before, their start (the
    # forkserver's interpreter, each worker's fork) would compete with the server's imports
    # for the CPU, and the run's first submit waits for the server, not for them.
    engines = EarlyEngines(
        lambda: make_executor(config.executor, config.workers), config.workers, start=False
    )
    # This process runs nothing but the emulator, which serves no files: aiohttp's file
    # responses can do with Python's own table of types, without reading the system's
    # (mimetypes.inited is the documented switch; about 30 ms).
    mimetypes.inited = True
    tls.import_aiohttp()  # certificates loaded if an https input is ever fetched (inputs.py)
    asyncio.run(_serve(config, sock, engines))


async def _serve(config: EmulatorConfig, sock: socket.socket, early: EarlyEngines) -> None:
    from .server import running_emulator

    engines = early.pending()
    try:
        async with running_emulator(config, executor=engines, sock=sock):
            early.start()
            await _stdin_closed()
    finally:
        await asyncio.to_thread(engines.shutdown, True, cancel_futures=True)


async def _stdin_closed() -> None:
    """Return when stdin reaches end of file (the run closed it, or the run is gone), or at
    SIGTERM."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    class _Watch(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            stop()

    def stop() -> None:
        if not closed.done():
            closed.set_result(None)

    transport, _ = await loop.connect_read_pipe(_Watch, sys.stdin)
    loop.add_signal_handler(signal.SIGTERM, stop)  # as the end of file: the workers go too
    try:
        await closed
    finally:
        transport.close()


if __name__ == "__main__":
    main()
