"""Param values: ``-p name=value`` strings, ``--params`` files, declared defaults; typed and
checked against the declarations.

Relative image paths are made absolute against where they were written: the recipe's directory
for defaults, the params file's directory for a params file, the working directory for ``-p``.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import Diagnostic, RecipeError, UsageError
from ..images import is_data_uri, is_remote
from ..redact import redact_text
from .loader import Location, load_file, load_text
from .model import Param

COMMAND_LINE = "command line"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True)
class GivenValue:
    """A param value from outside the recipe, and where it came from."""

    name: str
    value: object
    location: Location
    #: Relative image paths are resolved against this directory.
    base_dir: Path


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["factor=4", "style=ink"]`` -> ``{"factor": "4", "style": "ink"}``. Raises UsageError."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"-p {item!r}: expected name=value, e.g. -p factor=4")
        bad = next((i for i, c in enumerate(value) if "\udc80" <= c <= "\udcff"), None)
        if bad is not None:
            # The shell passed bytes that are not UTF-8; they would fail at the first submit.
            byte = ord(value[bad]) - 0xDC00
            raise UsageError(
                f"-p {name}: the value is not UTF-8 text (byte 0x{byte:02x} at character "
                f"{bad + 1}); use UTF-8 in the terminal, or a --params file"
            )
        out[name] = value
    return out


def given_from_mapping(values: Mapping[str, object], base_dir: Path) -> list[GivenValue]:
    """Values from the command line or a Python caller."""
    return [
        GivenValue(name, value, Location(COMMAND_LINE), base_dir) for name, value in values.items()
    ]


def given_from_file(path: Path) -> list[GivenValue]:
    """Values from a YAML or JSON mapping file. Raises RecipeError (with the file's lines)."""
    doc = load_file(path)
    if doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        raise RecipeError(
            [Diagnostic(str(path), 1, 1, "", "a params file must be a mapping of name: value")]
        )
    base = path.resolve().parent
    return [
        GivenValue(str(name), value, doc.source.at((name,)), base)
        for name, value in doc.data.items()
    ]


def bind(
    decls: Mapping[str, Param], given: Sequence[GivenValue], recipe_dir: Path
) -> tuple[dict[str, object], list[Diagnostic]]:
    """Values for every declared param (later ``given`` entries win), and the problems found."""
    problems: list[Diagnostic] = []
    chosen: dict[str, GivenValue] = {}
    for g in given:
        if g.name not in decls:
            problems.append(_diag(g.location, g.name, *_unknown(g.name, decls)))
        else:
            chosen[g.name] = g
    values: dict[str, object] = {}
    for name, decl in decls.items():
        if name in chosen:
            g = chosen[name]
            source, raw, base = g.location, g.value, g.base_dir
        elif decl.has_default:
            source, raw, base = decl.location, decl.default, recipe_dir
        else:
            problems.append(
                _diag(
                    decl.location,
                    name,
                    "no value given and no default",
                    f"pass -p {name}=<{decl.type}> or --params FILE, or add a default",
                )
            )
            continue
        try:
            values[name] = convert(decl, raw, base)
        except ValueError as exc:
            problems.append(_diag(source, name, str(exc), _range_hint(decl)))
    return values, problems


def convert(decl: Param, raw: object, base_dir: Path) -> object:
    """``raw`` as a value of the declared type, checked against enum/minimum/maximum.

    A ``list`` param takes a list, or a string: ``a,b,c`` (split on commas, spaces around an
    item dropped) or a YAML/JSON flow list ``[a, "b,c"]``; each item is converted and checked
    as its ``items`` declaration says.
    """
    if decl.type == "list":
        return _list(decl, raw, base_dir)
    value = _typed(decl, raw)
    if decl.type == "image":
        assert isinstance(value, str)
        value = resolve_image_path(value, base_dir)
    if decl.enum is not None and value not in decl.enum and raw not in decl.enum:
        choices = ", ".join(repr(v) for v in decl.enum)
        raise ValueError(f"{raw!r} is not one of {choices}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if decl.minimum is not None and value < decl.minimum:
            raise ValueError(f"{value!r} is less than the minimum of {_num(decl.minimum)}")
        if decl.maximum is not None and value > decl.maximum:
            raise ValueError(f"{value!r} is greater than the maximum of {_num(decl.maximum)}")
    return value


def _list(decl: Param, raw: object, base_dir: Path) -> list[object]:
    items = decl.items or Param(f"{decl.name}[]", "string")
    values: list[object]
    if isinstance(raw, list | tuple):
        values = list(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                parsed = load_text(text, "value").data
            except RecipeError:
                parsed = None
            if not isinstance(parsed, list):
                raise ValueError(f"{raw!r} is not a valid list, e.g. [a, b] or a,b")
            values = parsed
        else:
            values = [part.strip() for part in text.split(",")] if text else []
    else:
        raise ValueError(f"expected a list, got {raw!r}")
    out: list[object] = []
    for i, item in enumerate(values, 1):
        try:
            out.append(convert(items, item, base_dir))
        except ValueError as exc:
            raise ValueError(f"item {i}: {exc}") from None
    return out


def resolve_image_path(value: str, base_dir: Path) -> str:
    """An absolute path for a local image; URLs and data URIs unchanged."""
    if not value or is_remote(value) or is_data_uri(value) or "{{" in value:
        return value
    if value.startswith("file://"):
        value = value[len("file://") :]
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))


def _typed(decl: Param, raw: object) -> object:
    kind = decl.type
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {raw!r}")
    if kind == "integer":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ValueError(f"expected an integer, got {raw!r}")
    if kind == "number":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            if isinstance(raw, float) and not math.isfinite(raw):
                raise ValueError(f"expected a finite number, got {raw!r}")
            return float(raw)
        if isinstance(raw, str):
            try:
                number = float(raw.strip())
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
        raise ValueError(f"expected a number, got {raw!r}")
    # string, image
    if isinstance(raw, str):
        if kind == "image" and not raw.strip():
            raise ValueError("expected an image path, URL or data URI, got an empty string")
        return raw
    if kind == "string" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise ValueError(f"expected a {'path or URL' if kind == 'image' else 'string'}, got {raw!r}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range_hint(decl: Param) -> str | None:
    return type_hint(decl)


def type_hint(decl: Param) -> str:
    """``factor is an integer, between 1 and 4 (declared at r.yaml:4)``: what a value must be."""
    where = f" (declared at {decl.location.file}:{decl.location.line})"
    if decl.type == "list":
        items = decl.items or Param(decl.name, "string")
        return (
            f"{decl.name} is a list of {items.type} items{_bounds(items, ', each ')}, "
            f"e.g. a,b or [a, b]{where}"
        )
    return f"{decl.name} is {'a' if decl.type != 'integer' else 'an'} {decl.type}" + (
        _bounds(decl, ", ") + where
    )


def _bounds(decl: Param, lead: str) -> str:
    parts = []
    if decl.enum is not None:
        parts.append("one of " + ", ".join(repr(v) for v in decl.enum))
    if decl.minimum is not None or decl.maximum is not None:
        lo = _num(decl.minimum) if decl.minimum is not None else "-inf"
        hi = _num(decl.maximum) if decl.maximum is not None else "inf"
        parts.append(f"between {lo} and {hi}")
    return lead + " and ".join(parts) if parts else ""


def _unknown(name: str, decls: Mapping[str, Param]) -> tuple[str, str]:
    close = difflib.get_close_matches(name, list(decls), n=1, cutoff=0.6)
    declared = ", ".join(decls) if decls else "none"
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"the recipe declares no param {name!r}", f"{hint}declared params: {declared}")


def _diag(location: Location, name: str, message: str, hint: str | None) -> Diagnostic:
    return Diagnostic(
        location.file,
        location.line,
        location.column,
        f"params.{name}",
        redact_text(message),
        hint=hint,
    )
