"""A batch as one graph: every (row, step) is a node, so one scheduler runs them all.

The scheduler takes any recipe-like object with ``steps`` (``.id``, ``.function``),
``deps(id)``, ``dependents(id)``, ``levels()`` and a render callback; a :class:`BatchGraph` is
one. Node ids are ``<row key>/<step id>``: the scheduler writes a node's images to
``<run dir>/<row key>/<step>.png``, which is exactly the row's own run directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Diagnostic, RecipeError, UsageError
from ..executor.budget import budget_of as budget_of  # re-exported (its old home)
from ..executor.slots import priorities as step_priorities
from ..recipe.model import Recipe
from ..recipe.plan import check_rendering
from ..recipe.render import RenderedStep, render_step

#: A row key is used as a directory name: letters, digits, ``.``, ``_`` and ``-``.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Row:
    """One row of a batch: its key (the directory name), position, params and where it came
    from (``rows.csv:4``), as ``recipe.rows.load_rows`` gives them."""

    key: str
    index: int
    params: Mapping[str, object]
    origin: str = ""


def as_rows(rows: Iterable[Any]) -> list[Row]:
    """Rows from BatchRow-like objects (``key``, ``index``, ``params``, ``origin``) or plain
    mappings (a ``key`` entry names the row; otherwise the key derives from the values).
    Raises UsageError for a bad or repeated key."""
    result: list[Row] = []
    for position, row in enumerate(rows):
        if isinstance(row, Mapping):
            params = {k: v for k, v in row.items() if k != "key"}
            key = str(row["key"]) if row.get("key") not in (None, "") else derive_key(params)
            result.append(Row(key, position, params, f"row {position + 1}"))
        else:
            origin = getattr(row, "origin", None)
            if origin is not None and hasattr(origin, "file"):
                line = getattr(origin, "line", 0)
                origin = f"{origin.file}:{line}" if line else str(origin.file)
            result.append(
                Row(
                    str(row.key),
                    int(getattr(row, "index", position)),
                    dict(row.params),
                    str(origin or f"row {position + 1}"),
                )
            )
    seen: dict[str, Row] = {}
    for row in result:
        if not _KEY.match(row.key):
            raise UsageError(
                f"{row.origin}: row key {row.key!r} cannot name a directory: use letters, "
                "digits, '.', '_' and '-' (at most 100)"
            )
        if row.key in seen:
            raise UsageError(
                f"{row.origin}: row key {row.key!r} repeats {seen[row.key].origin}; "
                "give each row a distinct key"
            )
        seen[row.key] = row
    if not result:
        raise UsageError("the batch has no rows")
    return result


def derive_key(params: Mapping[str, object]) -> str:
    """A readable, stable key from a row's values: a slug of them plus a short hash."""
    values = [Path(str(v)).stem if os.sep in str(v) else str(v) for v in params.values()]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(values)).strip("-._")[:40] or "row"
    digest = hashlib.sha256(
        json.dumps({k: str(v) for k, v in sorted(params.items())}).encode()
    ).hexdigest()[:6]
    return f"{slug}-{digest}"


@dataclass(frozen=True)
class LoadedRow:
    row: Row
    recipe: Recipe
    #: Images each step bills when it succeeds (its rendered ``n``).
    images: Mapping[str, int]

    @property
    def key(self) -> str:
        return self.row.key


def load_rows_recipes(
    path: Path,
    rows: Sequence[Row],
    load: Any,
    common: Mapping[str, object] | None = None,
    param_files: Sequence[Any] = (),
) -> list[LoadedRow]:
    """Bind each row's params to the recipe and check it all (render with placeholders,
    inspect local inputs). Every problem of every row at once, each naming its row; raises
    RecipeError. ``load`` is ``api.load_recipe``."""
    loaded: list[LoadedRow] = []
    failed: list[tuple[Row, tuple[Diagnostic, ...]]] = []
    for row in rows:
        params = {**(common or {}), **row.params}
        try:
            recipe = load(path, params, param_files, check_inputs=False)
            rendered, checked = check_rendering(recipe)
        except RecipeError as exc:
            failed.append((row, exc.errors))
            continue
        errors = tuple(d for d in checked if d.severity == "error")
        if errors:
            failed.append((row, errors))
            continue
        loaded.append(LoadedRow(row, recipe, _images(recipe, rendered)))
    if failed:
        # A problem of the recipe itself shows in every row: say it once.
        common_problems = set(failed[0][1]) if len(failed) == len(rows) else set()
        for _, diagnostics in failed[1:]:
            common_problems &= set(diagnostics)
        problems = sorted(common_problems)
        for row, diagnostics in failed:
            problems.extend(_for_row(row, [d for d in diagnostics if d not in common_problems]))
        raise RecipeError(problems)
    return loaded


def _images(recipe: Recipe, rendered: Mapping[str, RenderedStep]) -> dict[str, int]:
    return {s.id: rendered[s.id].n if s.id in rendered else 1 for s in recipe.steps}


def _for_row(row: Row, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    where = f"row {row.key}" + (f" ({row.origin})" if row.origin else "")
    return [
        Diagnostic(d.file, d.line, d.column, d.path, f"{where}: {d.message}", d.severity, d.hint)
        for d in diagnostics
    ]


def node_id(key: str, step_id: str) -> str:
    return f"{key}/{step_id}"


@dataclass(frozen=True)
class BatchNode:
    id: str
    function: str
    row: str
    step: str


@dataclass
class BatchGraph:
    """Every row's steps as one graph, ordered row by row."""

    path: Path
    rows: list[LoadedRow]
    nodes: dict[str, BatchNode] = field(init=False)
    by_key: dict[str, LoadedRow] = field(init=False)
    _deps: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    _dependents: dict[str, tuple[str, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.nodes = {}
        self._deps, self._dependents = {}, {}
        self.by_key = {r.key: r for r in self.rows}
        for loaded in self.rows:
            recipe = loaded.recipe
            for step in recipe.steps:
                nid = node_id(loaded.key, step.id)
                self.nodes[nid] = BatchNode(nid, step.function, loaded.key, step.id)
                self._deps[nid] = tuple(node_id(loaded.key, d) for d in recipe.deps(step.id))
                self._dependents[nid] = tuple(
                    node_id(loaded.key, d) for d in recipe.dependents(step.id)
                )

    @property
    def steps(self) -> tuple[BatchNode, ...]:
        return tuple(self.nodes.values())

    def deps(self, nid: str) -> tuple[str, ...]:
        return self._deps[nid]

    def dependents(self, nid: str) -> tuple[str, ...]:
        return self._dependents[nid]

    def display_path(self, path: Path) -> str:
        """Paths as the recipe shows them: every row is a binding of the same recipe file."""
        return self.rows[0].recipe.display_path(path)

    def levels(self) -> tuple[tuple[str, ...], ...]:
        merged: list[list[str]] = []
        for loaded in self.rows:
            for depth, level in enumerate(loaded.recipe.levels()):
                while len(merged) <= depth:
                    merged.append([])
                merged[depth].extend(node_id(loaded.key, sid) for sid in level)
        return tuple(tuple(level) for level in merged)

    def priorities(self) -> dict[str, tuple[int, int]]:
        """Earlier rows first, and within a row its longest chain first: the slots never
        idle while anything is ready, and rows finish one after another (not all at the end),
        so a budget or an interrupt leaves whole rows done."""
        order: dict[str, tuple[int, int]] = {}
        for position, loaded in enumerate(self.rows):
            ranked = sorted(step_priorities(loaded.recipe).items(), key=lambda kv: kv[1])
            for rank, (sid, _) in enumerate(ranked):
                order[node_id(loaded.key, sid)] = (position, rank)
        return order

    def images(self, nid: str) -> int:
        node = self.nodes[nid]
        return int(self.by_key[node.row].images.get(node.step, 1))

    @property
    def planned_images(self) -> int:
        return sum(sum(r.images.values()) for r in self.rows)

    def render(self, graph: Any, nid: str, upstream: Mapping[str, Sequence[object]]) -> Any:
        """The scheduler's render callback: render the node's step in its row's recipe."""
        node = self.nodes[nid]
        recipe = self.by_key[node.row].recipe
        outputs = {self.nodes[d].step: images for d, images in upstream.items()}
        return render_step(recipe, node.step, outputs)
