"""Batch rows: one set of param values per run of a recipe, from a file or a glob.

Sources
-------
- ``rows.csv`` (``.tsv``: tab-separated): a header row naming the columns, then one row per
  line (a quoted cell may span lines; the row's line is the line it starts on). UTF-8, a BOM is
  ignored. Blank lines are skipped. An empty cell means "not given" (the param's ``-p`` value
  or default applies).
- ``rows.yaml`` / ``rows.yml`` / ``rows.json``: a list of mappings, column -> value (YAML types:
  ``factor: 3`` is already an integer). ``null`` means "not given".
- ``rows.jsonl`` / ``rows.ndjson``: one JSON object per line; blank lines skipped.
- ``--each NAME=GLOB``: one row per file matching GLOB (relative to the working directory,
  ``**`` recursive), sorted by path; the row's only column is NAME.

Columns are params, converted and checked exactly like ``-p`` values
(:func:`wanrecipe.recipe.params.convert`): relative image paths are resolved against the rows
file's directory (like a ``--params`` file) and, for ``--each``, against the working directory
(like ``-p``); local image files are inspected (exists, format, size). A column the recipe does
not declare is an error, once per column. A param without a default must be given by ``-p`` /
``--params`` (``supplied``) or by every row. Every problem of every selected row is reported
at once, as ``rows.csv:LINE: error: column photo: ...``, in a :class:`RecipeError` (exit 2,
nothing submitted).

Keys
----
Every row has a key, the name of its directory in the batch run directory. A ``key`` column
(never a param) gives it: 1-64 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or
digit, not ``run.json``/``report.html`` and no Windows device name. Otherwise the key is derived
from the row's given values: a readable slug (the values in the recipe's param order, an image
by its file's stem) and 10 hex digits of a sha256 over the typed values (image paths as written,
never resolved),
e.g. ``old-photo-4-1f3a9c0b2d``: the same row gives the same key on every run and machine,
whatever the column order. Two rows with the same key (compared case-insensitively, as macOS
and Windows file systems do) are an error naming both lines.

Selection
---------
``rows="3:10"`` keeps data rows 3 to 10, 1-based and inclusive (the header is not a row):
``"3:"`` from row 3 on, ``":10"`` the first ten, ``"5"`` row 5 alone. ``limit=N`` then keeps
the first N of those. ``BatchRow.index`` is the row's 1-based position in the source, unchanged
by selection. Only the selected rows are checked; a file that does not parse is an error
wherever the damage is.

API
---
``load_rows(decls, source, *, rows=None, limit=None, supplied=()) -> list[BatchRow]``,
``each_rows(decls, "photo=photos/*.jpg", *, cwd=None, rows=None, limit=None, supplied=())``,
``param_declarations(recipe_path) -> dict[str, Param]`` (the declarations without binding any
value, for recipes whose params have no default). ``decls`` is a :class:`Recipe` or its
``param_decls``. ``BatchRow(key, index, params, origin)``: ``params`` holds the row's own
values, typed (image paths absolute); merge them over the command line's values, or pass
``row.given()`` after the command line's ``GivenValue``s to ``build_recipe`` so messages about a
value name its cell.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Diagnostic, ImageInputError, RecipeError, UsageError
from ..images import check_file_decodes, input_problems, inspect_file, is_data_uri, is_remote
from ..redact import redact_text
from .loader import Location, load_file
from .model import Param, Recipe
from .params import GivenValue, convert, type_hint
from .rowfiles import Cell, RawRow, read_rows

KEY_COLUMN = "key"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Names a row directory must not take: files of the batch directory, Windows devices.
RESERVED_KEYS = frozenset(
    {"run.json", "report.html", "con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_HASH_DIGITS = 10
_SLUG_CHARS = 40


@dataclass(frozen=True)
class BatchRow:
    """One run of a batch."""

    #: File-system-safe, unique in the batch (case-insensitively), stable across runs.
    key: str
    #: 1-based position of the row in its source (selection does not renumber).
    index: int
    #: The row's own param values, typed and checked (image paths absolute).
    params: Mapping[str, object]
    #: Where the row was written: the rows file and line, or the matched file for ``--each``.
    origin: Location
    #: Where each value was written (for messages about a value later on).
    locations: Mapping[str, Location] = field(default_factory=dict, compare=False)

    def given(self) -> list[GivenValue]:
        """The row's values as params given from outside, each pinned to its cell: pass them
        to :func:`wanrecipe.recipe.build.build_recipe` after the command line's, so a later
        problem with a value names the rows file's line."""
        return [
            GivenValue(name, value, self.locations.get(name, self.origin), Path.cwd())
            for name, value in self.params.items()
        ]


@dataclass(frozen=True)
class RowRange:
    """Data rows ``start`` to ``stop``, 1-based and inclusive; None is open."""

    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str) -> RowRange:
        """``"3:10"``, ``"3:"``, ``":10"``, ``"5"``. Raises UsageError."""
        raw = text.strip()
        head, colon, tail = raw.partition(":")
        try:
            start = int(head) if head.strip() else None
            stop = int(tail) if tail.strip() else None
        except ValueError:
            raise UsageError(
                f"--rows {text!r}: expected A:B with 1-based row numbers, e.g. --rows 3:10"
            ) from None
        if not colon:
            stop = start
        if (start is not None and start < 1) or (stop is not None and stop < 1):
            raise UsageError(f"--rows {text!r}: rows are numbered from 1")
        if start is not None and stop is not None and start > stop:
            raise UsageError(f"--rows {text!r}: the first row is after the last")
        return cls(start, stop)

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        return (self.start is None or index >= self.start) and (
            self.stop is None or index <= self.stop
        )

    def __str__(self) -> str:
        if self.start is not None and self.start == self.stop:
            return str(self.start)
        return f"{self.start or ''}:{self.stop or ''}"


def param_declarations(path: str | os.PathLike[str]) -> dict[str, Param]:
    """The recipe's param declarations, no value bound. Raises RecipeError (schema errors)."""
    from .build import declarations

    file = os.fspath(path)
    return declarations(load_file(Path(file), file))


def load_rows(
    decls: Recipe | Mapping[str, Param],
    source: str | os.PathLike[str],
    *,
    rows: str | RowRange | None = None,
    limit: int | None = None,
    supplied: Collection[str] = (),
) -> list[BatchRow]:
    """The selected rows of a rows file, checked. Raises RecipeError listing every problem."""
    file = os.fspath(source)
    path = Path(file)
    raw_rows, header, problems = read_rows(path, file)
    # Rows that parsed are still checked: every problem of the file at once.
    return _finish(_decls(decls), raw_rows, file, header, rows, limit, supplied, problems)


def each_rows(
    decls: Recipe | Mapping[str, Param],
    spec: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    rows: str | RowRange | None = None,
    limit: int | None = None,
    supplied: Collection[str] = (),
) -> list[BatchRow]:
    """One row per file matching ``NAME=GLOB``, sorted. Raises UsageError / RecipeError."""
    name, sep, pattern = spec.partition("=")
    name, pattern = name.strip(), pattern.strip()
    if not sep or not name or not pattern:
        raise UsageError(f"--each {spec!r}: expected NAME=GLOB, e.g. --each photo='photos/*.jpg'")
    base = Path(cwd) if cwd is not None else Path.cwd()
    matches = sorted(
        m for m in glob.glob(pattern, root_dir=base, recursive=True) if (base / m).is_file()
    )
    where = Location(f"--each {name}={pattern}")
    if not matches:
        hint = "quote the pattern so the shell does not expand it: --each photo='photos/*.jpg'"
        if (base / pattern).is_dir():
            hint = f"{pattern} is a directory: match its files, e.g. '{pattern.rstrip('/')}/*.jpg'"
        raise RecipeError([Diagnostic(where.file, 0, 0, "", "no file matches", hint=hint)])
    raw_rows = [
        RawRow(i, Location(match), {name: Cell(match, where, match)}, base)
        for i, match in enumerate(matches, 1)
    ]
    return _finish(_decls(decls), raw_rows, where.file, where, rows, limit, supplied)


# -- checking ----------------------------------------------------------------------------------


def _decls(decls: Recipe | Mapping[str, Param]) -> Mapping[str, Param]:
    return decls.param_decls if isinstance(decls, Recipe) else decls


def _finish(
    decls: Mapping[str, Param],
    raw_rows: Sequence[RawRow],
    file: str,
    header: Location | None,
    rows: str | RowRange | None,
    limit: int | None,
    supplied: Collection[str],
    problems: list[Diagnostic] | None = None,
) -> list[BatchRow]:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: expected a positive number of rows")
    selection = RowRange.parse(rows) if isinstance(rows, str) else rows or RowRange()
    problems = problems if problems is not None else []
    if not raw_rows:
        if not problems:
            problems.append(Diagnostic(file, 0, 0, "", "no rows", hint="add a row per run"))
        raise RecipeError(problems)
    chosen = [r for r in raw_rows if r.index in selection][:limit]
    if not chosen and not problems:
        raise RecipeError(
            [
                Diagnostic(
                    file,
                    0,
                    0,
                    "",
                    f"--rows {selection} selects no row: there are {len(raw_rows)}",
                )
            ]
        )
    checker = _ImageChecker()
    unknown_reported: set[str] = set()
    keys: dict[str, BatchRow] = {}
    result: list[BatchRow] = []
    for raw in chosen:
        params: dict[str, object] = {}
        stable: dict[str, object] = {}
        ok = True
        for name, cell in raw.cells.items():
            if name == KEY_COLUMN:
                continue
            decl = decls.get(name)
            if decl is None:
                if name not in unknown_reported:
                    unknown_reported.add(name)
                    problems.append(_unknown_column(header or cell.location, name, decls))
                ok = False
                continue
            if isinstance(cell.value, str) and not cell.value.strip():
                continue
            try:
                value = convert(decl, cell.value, raw.base_dir)
            except ValueError as exc:
                problems.append(_diag(cell.location, f"column {name}", str(exc), type_hint(decl)))
                ok = False
                continue
            for message, hint in checker.check(decl, value, cell):
                problems.append(_diag(cell.location, f"column {name}", message, hint))
                ok = False
            params[name] = value
            stable[name] = _stable_value(decl, value, cell)
        for name, decl in decls.items():
            if not decl.has_default and name not in params and name not in supplied:
                if name not in raw.cells:
                    problems.append(
                        _diag(
                            raw.origin,
                            "",
                            f"no value for param {name!r}, which has no default",
                            f"give it in a {name!r} column, or pass -p {name}=<{decl.type}>",
                        )
                    )
                ok = False
        # The slug follows the recipe's declaration order, so column order does not matter.
        slug = [_slug_part(d, stable[n]) for n, d in decls.items() if n in stable]
        key = _row_key(raw, stable, slug, problems)
        if key is None or not ok:
            continue
        row = BatchRow(
            key,
            raw.index,
            params,
            raw.origin,
            {n: c.location for n, c in raw.cells.items() if n in params},
        )
        first = keys.setdefault(key.casefold(), row)
        if first is not row:
            problems.append(
                _diag(
                    raw.origin,
                    "",
                    f"row key {key!r} is also the key of the row at {_where(first.origin)}"
                    + (
                        f" ({first.key!r}: keys are compared ignoring case)"
                        if first.key != key
                        else ""
                    ),
                    "keys name the rows' directories and must differ; add or fix a 'key' column"
                    if KEY_COLUMN in raw.cells
                    else "two rows with the same values: remove one, or add a 'key' column",
                )
            )
            continue
        result.append(row)
    if problems:
        raise RecipeError(sorted(problems, key=lambda d: (d.line, d.path, d.message)))
    return result


def _row_key(
    raw: RawRow, stable: Mapping[str, object], slug: Sequence[str], problems: list[Diagnostic]
) -> str | None:
    given = raw.cells.get(KEY_COLUMN)
    if given is not None:
        text = str(given.value).strip() if not isinstance(given.value, bool) else ""
        problem = _key_problem(text) if isinstance(given.value, str | int) else "not a string"
        if problem:
            problems.append(
                _diag(
                    given.location,
                    f"column {KEY_COLUMN}",
                    f"{given.value!r}: {problem}",
                    "1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
                )
            )
            return None
        return text
    canonical = json.dumps(stable, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_HASH_DIGITS]
    readable = "-".join(p for p in slug if p)[:_SLUG_CHARS].strip("-") or "row"
    return f"{readable}-{digest}"


def _key_problem(key: str) -> str | None:
    if not KEY_PATTERN.match(key):
        return "not a usable directory name"
    if key.casefold() in RESERVED_KEYS or key.split(".")[0].casefold() in RESERVED_KEYS:
        return "a reserved name"
    if ".." in key:
        return "'..' is not allowed in a key"
    return None


class _ImageChecker:
    """Local image files named by cells, inspected once each (header, then that it decodes)."""

    def __init__(self) -> None:
        self._seen: dict[str, list[str]] = {}

    def check(self, decl: Param, value: object, cell: Cell) -> list[tuple[str, str | None]]:
        kind = decl.items.type if decl.type == "list" and decl.items else decl.type
        if kind != "image":
            return []
        values = value if isinstance(value, list) else [value]
        out: list[tuple[str, str | None]] = []
        for item in values:
            if not isinstance(item, str) or is_remote(item) or is_data_uri(item):
                continue
            if item not in self._seen:
                try:
                    problems = input_problems(inspect_file(Path(item)))
                    if not problems:
                        check_file_decodes(Path(item))  # the data too, not only the header
                    self._seen[item] = problems
                except ImageInputError as exc:
                    self._seen[item] = [str(exc)]
            shown = cell.text.strip() if cell.text else str(cell.value)
            for message in self._seen[item]:
                message = message.replace(item, shown)
                if not message.startswith(shown):
                    message = f"{shown}: {message}"
                hint = None
                if message.endswith("no such file"):
                    hint = "paths in a rows file are relative to the rows file"
                out.append((message, hint))
        return out


def _stable_value(decl: Param, value: object, cell: Cell) -> object:
    kind = decl.items.type if decl.type == "list" and decl.items else decl.type
    if kind != "image":
        return value
    # Image paths as written: the resolved path differs from machine to machine.
    if isinstance(cell.value, str):
        return cell.value.strip()
    return cell.value


def _slug_part(decl: Param, value: object) -> str:
    items = value if isinstance(value, list) else [value]
    kind = decl.items.type if decl.type == "list" and decl.items else decl.type
    parts = []
    for item in items:
        text = str(item)
        if kind == "image" and not is_data_uri(text):
            text = Path(text.split("?", 1)[0].rstrip("/")).stem
        elif kind == "image":
            text = "data"
        else:
            text = redact_text(text)  # a signed URL's query never names a directory
        parts.append(_slugify(text))
    return "-".join(p for p in parts if p)


def _slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _unknown_column(where: Location, name: str, decls: Mapping[str, Param]) -> Diagnostic:
    import difflib

    close = difflib.get_close_matches(name, list(decls), n=1, cutoff=0.6)
    declared = ", ".join(decls) if decls else "none"
    hint = (f"did you mean {close[0]!r}? " if close else "") + f"declared params: {declared}"
    return _diag(where, f"column {name}", f"the recipe declares no param {name!r}", hint)


def _where(location: Location) -> str:
    return f"{location.file}:{location.line}" if location.line else location.file


def _diag(where: Location, path: str, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(where.file, where.line, 0, path, redact_text(message), hint=hint)
