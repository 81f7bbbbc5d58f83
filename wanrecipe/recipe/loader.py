"""Read YAML safely and remember where every value came from.

Only YAML's plain types are built (the safe constructor: ``!!python/...`` tags are refused),
duplicate keys are errors, and a :class:`SourceMap` maps each path inside the document
(``("steps", "upscale", "parameters", "n")``) to its line and column, so every later check can
point at the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Diagnostic, RecipeError

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathKey = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Location:
    """A place in a file, 1-based (0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a loaded document sits in its file."""

    file: str
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    #: Values written as block scalars (``|`` or ``>``): their text starts on the next line.
    blocks: set[PathKey] = field(default_factory=set)
    #: Mapping keys that YAML reads as something other than a string (``1:``, ``yes:``).
    odd_keys: list[tuple[PathKey, str]] = field(default_factory=list)

    def at(self, path: PathKey) -> Location:
        """The value at ``path``, or the nearest enclosing value that has a mark."""
        for i in range(len(path), -1, -1):
            mark = self.values.get(path[:i])
            if mark:
                return Location(self.file, *mark)
        return Location(self.file)

    def text_line_at(self, path: PathKey, line: int) -> Location:
        """Line ``line`` (1-based) of the string at ``path``; exact for block scalars."""
        where = self.at(path)
        if path in self.blocks:
            return Location(self.file, where.line + line, 0)
        if line <= 1:
            return where
        return Location(self.file, where.line + line - 1, 0)

    def key_at(self, path: PathKey) -> Location:
        """The key naming ``path`` (for "unknown field" errors), else the value."""
        mark = self.keys.get(path)
        return Location(self.file, *mark) if mark else self.at(path)


@dataclass(frozen=True)
class Document:
    data: Any
    source: SourceMap


class _DuplicateKey(Exception):
    def __init__(self, key: str, node: yaml.Node, first_line: int) -> None:
        super().__init__(key)
        self.key = key
        self.node = node
        self.first_line = first_line


def load_text(text: str, file: str) -> Document:
    """Parse one YAML document. Raises RecipeError with the file position of the problem."""
    loader = _BaseLoader(text)
    source = SourceMap(file)
    try:
        node = loader.get_single_node()
        if node is not None:
            # Marks and duplicate keys come from the node tree, before anything is built.
            _record(node, (), source)
        data = loader.construct_document(node) if node is not None else None
    except _DuplicateKey as exc:
        mark = exc.node.start_mark
        raise RecipeError(
            [
                Diagnostic(
                    file,
                    mark.line + 1,
                    mark.column + 1,
                    "",
                    f"duplicate key {exc.key!r} (first defined on line {exc.first_line})",
                    hint="each key may appear once per mapping; merge the two entries",
                )
            ]
        ) from None
    except yaml.constructor.ConstructorError as exc:
        raise RecipeError([_yaml_diagnostic(file, exc, _constructor_hint(exc))]) from None
    except yaml.YAMLError as exc:
        raise RecipeError([_yaml_diagnostic(file, exc, None)]) from None
    finally:
        loader.dispose()
    return Document(data, source)


def load_file(path: Path, file: str | None = None) -> Document:
    """Read and parse ``path``; ``file`` is the name used in messages (default: as given)."""
    name = file if file is not None else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([Diagnostic(name, 0, 0, "", "no such file")]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(
            [Diagnostic(name, 0, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise RecipeError([Diagnostic(name, 0, 0, "", f"cannot read: {exc.strerror}")]) from None
    return load_text(text, name)


def _record(node: yaml.Node, path: PathKey, source: SourceMap) -> None:
    # Iterative walk: a 1,000-step recipe is deep and wide, and recursion costs frames.
    stack: list[tuple[yaml.Node, PathKey]] = [(node, path)]
    visited: set[int] = set()
    while stack:
        current, here = stack.pop()
        # An alias is the anchored node itself: walk it once (a recursive alias would loop).
        if id(current) in visited:
            continue
        visited.add(id(current))
        mark = current.start_mark
        source.values.setdefault(here, (mark.line + 1, mark.column + 1))
        if isinstance(current, yaml.ScalarNode) and current.style in ("|", ">"):
            source.blocks.add(here)
        if isinstance(current, yaml.MappingNode):
            seen: dict[tuple[str, str], yaml.Node] = {}
            for key_node, value_node in current.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                # Same tag and text is the same key (`1` and `"1"` differ: int and str).
                first = seen.setdefault((key_node.tag, key_node.value), key_node)
                if first is not key_node:
                    raise _DuplicateKey(key_node.value, key_node, first.start_mark.line + 1)
                child = (*here, key_node.value)
                if key_node.tag != _STR_TAG:
                    source.odd_keys.append((child, key_node.tag.rsplit(":", 1)[-1]))
                km = key_node.start_mark
                source.keys.setdefault(child, (km.line + 1, km.column + 1))
                stack.append((value_node, child))
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                stack.append((item, (*here, i)))


def _yaml_diagnostic(file: str, exc: yaml.YAMLError, hint: str | None) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}: {problem}" if context and "constructor" not in context else problem
    return Diagnostic(file, line, column, "", f"invalid YAML: {message}", hint=hint)


def _constructor_hint(exc: yaml.constructor.ConstructorError) -> str | None:
    if "python/" in str(exc.problem or ""):
        return "recipes are plain data: Python tags (!!python/...) are never executed"
    return "remove the tag; recipes use plain YAML types only"
