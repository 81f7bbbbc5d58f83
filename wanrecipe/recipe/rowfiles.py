"""Reading batch rows files (CSV/TSV, YAML/JSON, JSONL) into cells with their lines.

Checking the values is :mod:`wanrecipe.recipe.rows`' job; here only the files' structure is
checked (header, cell counts, JSON syntax, duplicate columns), every problem collected.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Diagnostic, RecipeError
from .loader import Location, load_file, read_text

#: A rows file larger than this is refused before it is read whole.
MAX_ROWS_FILE_BYTES = 64 * 1024 * 1024

_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "yaml",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


@dataclass(frozen=True)
class Cell:
    """One given value and where it was written."""

    value: object
    location: Location
    #: The text as written, for CSV (keys hash typed values; this is for image paths).
    text: str | None = None


@dataclass
class RawRow:
    """One data row as read: 1-based ``index`` among the data rows, its non-empty cells."""

    index: int
    origin: Location
    cells: dict[str, Cell]
    base_dir: Path


def read_rows(path: Path, file: str) -> tuple[list[RawRow], Location | None, list[Diagnostic]]:
    """The rows that parsed, the header's location (CSV), and the structural problems.

    Raises RecipeError when the file cannot be read at all."""
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise RecipeError(
            [
                Diagnostic(
                    file,
                    0,
                    0,
                    "",
                    f"unknown rows file type {path.suffix or '(none)'!r}",
                    hint="use .csv, .tsv, .yaml, .json or .jsonl",
                )
            ]
        )
    base = path.resolve().parent
    problems: list[Diagnostic] = []
    if kind == "yaml":
        return _read_yaml(path, file, base, problems), None, problems
    # Size-capped, and a byte that is not UTF-8 is reported with its line.
    text = read_text(path, file, max_bytes=MAX_ROWS_FILE_BYTES)
    if kind == "jsonl":
        return _read_jsonl(text, file, base, problems), None, problems
    rows, header = _read_csv(text, file, base, "\t" if kind == "tsv" else ",", problems)
    return rows, header, problems


def _read_csv(
    text: str, file: str, base: Path, delimiter: str, problems: list[Diagnostic]
) -> tuple[list[RawRow], Location | None]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_at: Location | None = None
    out: list[RawRow] = []
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Diagnostic(file, reader.line_num, 0, "", f"invalid CSV: {exc}"))
            return out, header_at
        if not any(cell.strip() for cell in record):
            continue
        where = Location(file, line)
        if header is None:
            header, header_at = [cell.strip() for cell in record], where
            seen: set[str] = set()
            for column, name in enumerate(header, 1):
                if not name:
                    problems.append(_diag(where, f"column {column} of the header is empty"))
                elif name in seen:
                    problems.append(_diag(where, f"column {name!r} is named twice"))
                seen.add(name)
            continue
        if len(record) != len(header):
            problems.append(
                _diag(
                    where,
                    f"{len(record)} cell{'s' if len(record) != 1 else ''}, but the header "
                    f"(line {header_at.line if header_at else 1}) names {len(header)} columns",
                    "quote cells that contain the delimiter",
                )
            )
            continue
        cells = {
            name: Cell(cell, where, cell)
            for name, cell in zip(header, record, strict=True)
            if cell.strip()
        }
        out.append(RawRow(len(out) + 1, where, cells, base))
    if header is None:
        problems.append(
            Diagnostic(file, 0, 0, "", "no header row", hint="the first line names the columns")
        )
    return out, header_at


def _read_yaml(path: Path, file: str, base: Path, problems: list[Diagnostic]) -> list[RawRow]:
    doc = load_file(path, file)
    if not isinstance(doc.data, list):
        problems.append(
            Diagnostic(
                file, 1, 1, "", "a rows file must be a list of mappings", hint="- {photo: a.jpg}"
            )
        )
        return []
    out: list[RawRow] = []
    for i, item in enumerate(doc.data):
        where = doc.source.at((i,))
        where = Location(file, where.line)
        if not isinstance(item, dict):
            problems.append(_diag(where, f"row {i + 1} is not a mapping of column: value"))
            continue
        cells: dict[str, Cell] = {}
        for name, value in item.items():
            if not isinstance(name, str):
                problems.append(_diag(where, f"column name {name!r} is not a string"))
            elif value is not None:
                at = doc.source.at((i, name))
                cells[name] = Cell(value, Location(file, at.line))
        out.append(RawRow(i + 1, where, cells, base))
    return out


def _read_jsonl(text: str, file: str, base: Path, problems: list[Diagnostic]) -> list[RawRow]:
    out: list[RawRow] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = Location(file, number)
        try:
            item = json.loads(line, object_pairs_hook=_no_duplicates)
        except _DuplicateColumn as exc:
            problems.append(_diag(where, f"column {exc.name!r} is given twice"))
            continue
        except ValueError as exc:
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            column = exc.colno if isinstance(exc, json.JSONDecodeError) else 0
            problems.append(Diagnostic(file, number, column, "", f"invalid JSON: {message}"))
            continue
        if not isinstance(item, dict):
            problems.append(_diag(where, "each line must be a JSON object of column: value"))
            continue
        cells = {k: Cell(v, where) for k, v in item.items() if v is not None}
        out.append(RawRow(len(out) + 1, where, cells, base))
    return out


class _DuplicateColumn(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateColumn(k)
        out[k] = v
    return out


def _diag(where: Location, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(where.file, where.line, 0, "", message, hint=hint)
