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

#: A recipe or params file larger than this is refused before it is parsed (a 1,000-step
#: recipe is about 200 kB).
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
#: Values in a document once every YAML alias is expanded: an alias bomb ("billion laughs")
#: is a few lines that expand to billions; everything after the loader walks the expansion.
MAX_EXPANDED_NODES = 250_000


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
    if len(text) > MAX_DOCUMENT_BYTES:
        raise RecipeError([_too_big(file, MAX_DOCUMENT_BYTES)])
    loader = _BaseLoader(text)
    source = SourceMap(file)
    try:
        node = loader.get_single_node()
        if node is not None:
            # Before anything is built or walked: aliases expand only in what is built.
            # (No '&' in the text: no anchor, so no alias, and nothing to expand.)
            if "&" in text:
                _check_expansion(node, file)
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
    except yaml.reader.ReaderError as exc:
        # A character YAML never allows (NUL, most control characters): its line and column.
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        raise RecipeError(
            [
                Diagnostic(
                    file,
                    line,
                    column,
                    "",
                    f"invalid YAML: control character {_char(exc.character)} is not allowed",
                    hint="remove it (YAML text may not contain NUL or control characters)",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError([_yaml_diagnostic(file, exc, None)]) from None
    finally:
        loader.dispose()
    return Document(data, source)


def load_file(path: Path, file: str | None = None) -> Document:
    """Read and parse ``path``; ``file`` is the name used in messages (default: as given)."""
    name = file if file is not None else str(path)
    return load_text(read_text(path, name), name)


def read_text(path: Path, file: str, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A UTF-8 text file (a leading BOM dropped), at most ``max_bytes``. Raises RecipeError
    naming the file, and the line and column of a byte that is not UTF-8."""
    name = file
    try:
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise RecipeError([Diagnostic(name, 0, 0, "", "no such file")]) from None
    except IsADirectoryError:
        raise RecipeError([Diagnostic(name, 0, 0, "", "is a directory, not a file")]) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RecipeError([Diagnostic(name, 0, 0, "", f"cannot read: {reason}")]) from None
    if len(raw) > max_bytes:
        raise RecipeError([_too_big(name, max_bytes)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError([_not_utf8(name, raw, exc)]) from None
    return text.removeprefix("\ufeff")


def _too_big(file: str, limit: int) -> Diagnostic:
    return Diagnostic(
        file,
        0,
        0,
        "",
        f"over {limit // (1024 * 1024)} MB: refused before parsing",
        hint="a recipe is a short text file; keep large data (images, rows) in files of its own",
    )


def _not_utf8(file: str, raw: bytes, exc: UnicodeDecodeError) -> Diagnostic:
    start = exc.start
    line = raw.count(b"\n", 0, start) + 1
    line_start = raw.rfind(b"\n", 0, start) + 1
    column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
    return Diagnostic(
        file,
        line,
        column,
        "",
        f"not UTF-8 text: byte 0x{raw[start]:02x} ({exc.reason})",
        hint="save the file as UTF-8 (most editors: 'Save with encoding')",
    )


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand past MAX_EXPANDED_NODES, or refer to themselves.

    Counts with memo by node (an alias is its anchored node, shared), so the check costs the
    size of the document as written, not of its expansion.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = total
            if total > MAX_EXPANDED_NODES:
                mark = node.start_mark
                raise RecipeError(
                    [
                        Diagnostic(
                            file,
                            mark.line + 1,
                            mark.column + 1,
                            "",
                            f"this value expands to more than {MAX_EXPANDED_NODES:,} values "
                            "through YAML aliases (*name); refused before building anything",
                            hint="an alias repeats its anchor's whole value: write the values "
                            "out, or use fewer levels of aliases",
                        )
                    ]
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            mark = node.start_mark
            raise RecipeError(
                [
                    Diagnostic(
                        file,
                        mark.line + 1,
                        mark.column + 1,
                        "",
                        "this value contains an alias to itself (a recursive YAML anchor)",
                        hint="recipes are trees: an alias may not point into its own anchor",
                    )
                ]
            )
        on_path.add(key)
        stack.append((node, True))
        # A child on the current path is a cycle: it is reported when popped.
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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


#: Errors found where a bracket or quote should have closed: the place to fix is where it
#: opened (the parser only notices at the end of the file, or at the next unrelated line).
_UNCLOSED = {
    "while parsing a flow mapping": (
        "'{'",
        "close it with '}', or check for a missing ',' between its items",
    ),
    "while parsing a flow sequence": (
        "'['",
        "close it with ']', or check for a missing ',' between its items",
    ),
    "while scanning a quoted scalar": ("quote", "end the string with the same quote"),
}


def _yaml_diagnostic(file: str, exc: yaml.YAMLError, hint: str | None) -> Diagnostic:
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    unclosed = _UNCLOSED.get(str(context or ""))
    if unclosed is not None and context_mark is not None:
        opened, fix = unclosed
        noticed = f" by line {problem_mark.line + 1}" if problem_mark is not None else ""
        line, column = context_mark.line + 1, context_mark.column + 1
        return Diagnostic(
            file,
            line,
            column,
            "",
            f"invalid YAML: the {opened} opened here is not closed ({problem}{noticed})",
            hint=hint or fix,
        )
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    message = f"{context}: {problem}" if context and "constructor" not in context else problem
    return Diagnostic(file, line, column, "", f"invalid YAML: {message}", hint=hint)


def _constructor_hint(exc: yaml.constructor.ConstructorError) -> str | None:
    if "python/" in str(exc.problem or ""):
        return "recipes are plain data: Python tags (!!python/...) are never executed"
    return "remove the tag; recipes use plain YAML types only"


def _char(character: object) -> str:
    text = chr(character) if isinstance(character, int) else str(character)
    return repr(text)
