"""The local DashScope image-edit server (see docs/emulator.md).

    async with running_emulator(EmulatorConfig(latency="fast")) as emu:
        ...  # emu.base_url == "http://127.0.0.1:PORT/api/v1"; emu.stats()

``EmulatorThread`` does the same from synchronous code; ``create_app`` builds the bare
``aiohttp.web.Application``.

The names are loaded on first use: an engine worker (which imports ``emulator.engines``)
and the embedded emulator's process start without importing aiohttp's server on the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy import load_lazily

if TYPE_CHECKING:
    from .app import create_app
    from .config import EmulatorConfig, parse_duration, parse_latency
    from .server import EmulatorThread, RunningEmulator, running_emulator

__all__ = [
    "EmulatorConfig",
    "EmulatorThread",
    "RunningEmulator",
    "create_app",
    "parse_duration",
    "parse_latency",
    "running_emulator",
]

_HOME = {
    "create_app": "app",
    "EmulatorConfig": "config",
    "parse_duration": "config",
    "parse_latency": "config",
    "EmulatorThread": "server",
    "RunningEmulator": "server",
    "running_emulator": "server",
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _HOME, name)
