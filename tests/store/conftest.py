from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wanrecipe.store import StateDir


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDir]:
    with StateDir.open(tmp_path / ".wanrecipe") as sd:
        yield sd
