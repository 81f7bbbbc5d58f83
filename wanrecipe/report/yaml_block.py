"""Block-style YAML for plain documents, byte for byte what PyYAML's ``SafeDumper`` writes.

``dump(value)`` writes a mapping of mappings, lists and scalars (str, int, float, bool, None)
as ``yaml.dump(value, Dumper=SafeDumper, sort_keys=False, default_flow_style=False,
allow_unicode=True, width=10_000)`` does, or returns None for anything it does not handle
exactly (text outside printable ASCII, a list in a list, a very long line, a key PyYAML would
write as a complex key, any other type): the caller then asks PyYAML. For a lock file of
2,000 steps it takes a fraction of the time of PyYAML's representer and resolver, which
make several Python calls per node (``tests/report/test_yaml_block.py`` compares the two on
generated documents).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_STR = "tag:yaml.org,2002:str"
_FLOAT = "tag:yaml.org,2002:float"
#: The implicit types PyYAML's resolver would read a plain scalar as, by first character.
_IMPLICIT: dict[str | None, list[tuple[str, re.Pattern[str]]]] = (
    yaml.SafeDumper.yaml_implicit_resolvers
)
#: Printable ASCII only: beyond it, the emitters' escaping and width rules come in.
_ASCII = re.compile(r"[\x20-\x7e]*")
#: Indicators that forbid a plain scalar in block context (PyYAML's ``analyze_scalar``).
_FIRST = frozenset("#,[]{}&*!|>'\"%@`")
#: A line longer than this goes to PyYAML (its emitter folds past ``width``).
_MAX_LINE = 8_000
#: PyYAML writes a key this long or longer as a complex key (``? ...``), as it does an empty one.
_MAX_KEY = 128


class _Unsupported(Exception):
    pass


def dump(value: Any) -> str | None:
    """The document's YAML, or None when PyYAML must write it (see the module docstring)."""
    if not isinstance(value, dict) or not value:
        return None
    lines: list[str] = []
    try:
        _mapping(value, "", lines)
    except _Unsupported:
        return None
    return "\n".join(lines) + "\n"


def _mapping(value: dict[Any, Any], indent: str, lines: list[str]) -> None:
    for key, item in value.items():
        _entry(f"{indent}{_key(key)}:", item, indent, lines)


def _entry(head: str, item: Any, indent: str, lines: list[str]) -> None:
    """``head`` (``key:``, at ``indent``) and its value."""
    if isinstance(item, dict):
        if not item:
            lines.append(head + " {}")
        else:
            lines.append(head)
            _mapping(item, indent + "  ", lines)
    elif isinstance(item, list):
        if not item:
            lines.append(head + " []")
        else:
            lines.append(head)
            _sequence(item, indent, lines)  # indentless, as PyYAML writes it in a mapping
    else:
        _line(f"{head} {_scalar(item)}", lines)


def _sequence(value: list[Any], indent: str, lines: list[str]) -> None:
    for item in value:
        if isinstance(item, dict):
            if not item:
                lines.append(indent + "- {}")
                continue
            inner = indent + "  "
            for n, (key, sub) in enumerate(item.items()):
                prefix = indent + "- " if n == 0 else inner
                _entry(f"{prefix}{_key(key)}:", sub, inner, lines)
        elif isinstance(item, list):
            raise _Unsupported()
        else:
            _line(f"{indent}- {_scalar(item)}", lines)


def _line(line: str, lines: list[str]) -> None:
    """A line ending in a scalar; one PyYAML might fold goes to PyYAML."""
    if len(line) > _MAX_LINE:
        raise _Unsupported()
    lines.append(line)


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) >= _MAX_KEY:
        raise _Unsupported()
    return _text(key)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float:
        return _float(value)
    if kind is str:
        return _text(value)
    raise _Unsupported()  # a subclass, a Decimal, a Path: PyYAML's (it may refuse it)


def _float(value: float) -> str:
    # SafeRepresenter.represent_float, then the resolver must read it back as a float.
    if value != value:
        text = ".nan"
    elif value == float("inf"):
        text = ".inf"
    elif value == float("-inf"):
        text = "-.inf"
    else:
        text = repr(value).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
    if _resolve(text) != _FLOAT:
        raise _Unsupported()
    return text


def _text(value: str) -> str:
    if _ASCII.fullmatch(value) is None:
        raise _Unsupported()
    if _plain_ok(value) and _resolve(value) == _STR:
        return value
    return "'" + value.replace("'", "''") + "'"


def _plain_ok(value: str) -> bool:
    """Whether PyYAML's ``analyze_scalar`` allows ``value`` (printable ASCII) as a plain
    scalar in block context."""
    if not value or value[0] == " " or value[-1] == " ":
        return False
    if value.startswith(("---", "...")):
        return False
    first = value[0]
    if first in _FIRST:
        return False
    if first in "?:-" and (len(value) == 1 or value[1] == " "):
        return False
    return not (value[-1] == ":" or ": " in value or " #" in value)


def _resolve(value: str) -> str:
    """The tag PyYAML's resolver gives ``value`` as a plain scalar (BaseResolver.resolve)."""
    for tag, regexp in _IMPLICIT.get(value[0] if value else "", []) + _IMPLICIT.get(None, []):
        if regexp.match(value):
            return tag
    return _STR
