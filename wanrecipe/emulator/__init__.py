"""The local DashScope image-edit server (see docs/emulator.md).

    async with running_emulator(EmulatorConfig(latency="fast")) as emu:
        ...  # emu.base_url == "http://127.0.0.1:PORT/api/v1"; emu.stats()

``EmulatorThread`` does the same from synchronous code; ``create_app`` builds the bare
``aiohttp.web.Application``.
"""

from __future__ import annotations

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
