"""Running the emulator: in the current event loop, in a thread, or as ``wanrecipe serve``."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .app import API, EMULATOR, create_app
from .config import EmulatorConfig


class RunningEmulator:
    """A started emulator: where it listens and what it has counted."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self.runner = runner
        self.host = host
        self.port = port

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + API

    @property
    def app(self) -> web.Application:
        return self.runner.app

    def stats(self) -> dict[str, Any]:
        return self.app[EMULATOR].snapshot()


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None,
    *,
    executor: Executor | None = None,
    access_log_class: type[AbstractAccessLogger] | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[RunningEmulator]:
    """``async with running_emulator(cfg) as emu:`` serves on ``emu.base_url`` until exit.

    ``sock``: a listening socket to serve on (bound by someone else, e.g. the process that
    started this one) instead of binding ``config.host``/``config.port``."""
    config = config or EmulatorConfig()
    app = create_app(config, executor=executor)
    kwargs: dict[str, Any] = {"access_log": None, "handle_signals": False}
    if access_log_class is not None:
        kwargs = {"access_log_class": access_log_class, "handle_signals": False}
    runner = web.AppRunner(app, **kwargs)
    await runner.setup()
    try:
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock)
        else:
            site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
        await site.start()
        # The real port is only known after binding (port 0 picks a free one).
        host, port = runner.addresses[0][:2]
        yield RunningEmulator(runner, str(host), int(port))
    finally:
        await runner.cleanup()


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread, for sync code and CLI tests.

    ``with EmulatorThread(cfg) as emu: ... emu.base_url ... emu.stats()``
    """

    def __init__(self, config: EmulatorConfig | None = None, *, executor: Executor | None = None):
        self.config = config or EmulatorConfig()
        self._executor = executor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._running: RunningEmulator | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self._emu.base_url

    @property
    def origin(self) -> str:
        return self._emu.origin

    @property
    def port(self) -> int:
        return self._emu.port

    @property
    def _emu(self) -> RunningEmulator:
        if self._running is None:
            raise RuntimeError("the emulator thread is not running")
        return self._running

    def stats(self) -> dict[str, Any]:
        """A snapshot taken on the emulator's own loop (its counters are not thread-safe)."""
        assert self._loop is not None

        async def snap() -> dict[str, Any]:
            return self._emu.stats()

        return asyncio.run_coroutine_threadsafe(snap(), self._loop).result(timeout=10)

    def __enter__(self) -> EmulatorThread:
        self._thread = threading.Thread(target=self._main, name="wanrecipe-emulator", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_emulator(self.config, executor=self._executor) as emu:
                self._running = emu
                self._started.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._started.set()
