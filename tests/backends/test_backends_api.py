"""The public surface of wanrecipe.backends and its place in the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import wanrecipe.backends as backends

PACKAGE = Path(backends.__file__).parent


def test_all_is_sorted_and_complete() -> None:
    assert backends.__all__ == sorted(backends.__all__)
    public = {n for n in dir(backends) if not n.startswith("_")}
    submodules = {"annotations", "dashscope", "hosts", "models", "transport"}
    assert public - submodules == set(backends.__all__)


def test_backends_import_nothing_above_them() -> None:
    """The client knows nothing of the emulator, the executor or the CLI: the emulator is just
    another base URL."""
    allowed = {
        "wanrecipe",
        "wanrecipe.errors",
        "wanrecipe.redact",
        "wanrecipe.wire",
        "wanrecipe.offload",
        "wanrecipe.loopback",
    }
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = "wanrecipe" + ("." + node.module if node.module else "")
                if node.level == 1:
                    continue  # within wanrecipe.backends
                assert target in allowed, (path.name, target)
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                module = getattr(node, "module", None) or ""
                for name in [*names, module]:
                    assert not name.startswith("wanrecipe.emulator"), path.name
