"""The layering of docs/architecture.md holds: imports point down only."""

from __future__ import annotations

import ast
from pathlib import Path

import wanrecipe

PACKAGE = Path(wanrecipe.__file__).parent

#: The bottom layer: modules that import nothing from wanrecipe, or only each other.
_LEAVES = {"errors", "wire", "images", "redact", "offload", "lazy", "tls", "loopback"}
#: What the runner builds on: every layer below it.
_BELOW_RUNNER = _LEAVES | {"durations", "backends", "store", "report", "executor", "recipe"}

#: What each part may import from wanrecipe (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "wire": set(),
    "tls": set(),
    "redact": set(),
    "offload": set(),
    "lazy": set(),
    "loopback": set(),
    "durations": set(),
    "images": {"errors", "wire"},
    "recipe": {"durations", "errors", "wire", "images", "redact"},
    # The leaves: redact (a state URL shown without its password), durations (the TTL).
    "store": {"errors", "redact", "durations"},
    "backends": {"errors", "wire", "redact", "images", "offload", "loopback"},
    # As in DESIGN.md, store and report sit inside the executor's layer: above recipe and
    # backends, and free to use each other (the lock file needs the executor's keys).
    "report": _LEAVES | {"recipe", "store", "executor"},
    "executor": _LEAVES | {"backends", "store", "report", "recipe"},
    # The emulator shares only errors, images, wire and redact with the rest.
    "emulator": {"durations", "errors", "wire", "images", "redact", "tls", "lazy", "loopback"},
    "runner": _BELOW_RUNNER | {"emulator", "api"},
    # Batch runs: one scheduler over every row's steps, beside the runner it builds on.
    "batch": _BELOW_RUNNER | {"runner"},
    "api": _LEAVES | {"recipe", "report", "runner", "batch"},
    "cli": _BELOW_RUNNER | {"runner", "api", "emulator", "batch"},
    "__init__": {"errors", "api", "recipe", "report", "runner", "lazy"},
    "__main__": {"cli"},
}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(PACKAGE)
    parts: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(rel.parts[:-1])[: len(rel.parts) - node.level]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if target:
                    parts.add(target[0])
                else:  # "from .. import x": x are top-level modules
                    parts.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("wanrecipe."):
                parts.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("wanrecipe."):
                    parts.add(alias.name.split(".")[1])
    return parts


def test_imports_point_down_only():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        assert part in ALLOWED, f"{path}: add its layer to ALLOWED (and docs/architecture.md)"
        for used in imported_parts(path) - {part, "__version__"}:
            if used not in ALLOWED[part]:
                problems.append(f"{path.relative_to(PACKAGE)} imports {used}")
    assert not problems, "\n".join(problems)


def test_errors_imports_nothing_from_wanrecipe():
    assert imported_parts(PACKAGE / "errors.py") == set()
