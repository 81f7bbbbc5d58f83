from __future__ import annotations

from collections.abc import Iterator

import pytest

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    """One real emulator per module, on 127.0.0.1 port 0; engines in threads (fast start)."""
    with EmulatorThread(EmulatorConfig(executor="thread", workers=2)) as emu:
        yield emu
