"""Names a package exports but imports only on first use (PEP 562), for start-up time."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any


def load_lazily(package: str, homes: Mapping[str, str], name: str) -> Any:
    """The value of ``package.name`` from its home module (``homes[name]``, relative to the
    package: ``"execute"`` or ``".recipe.plan"``), kept as a plain attribute from then on.
    A package's ``__getattr__`` is ``return load_lazily(__name__, _HOME, name)``."""
    home = homes.get(name)
    if home is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module = importlib.import_module(home if home.startswith(".") else f".{home}", package)
    value = getattr(module, name)
    setattr(sys.modules[package], name, value)  # once found, a plain attribute
    return value
