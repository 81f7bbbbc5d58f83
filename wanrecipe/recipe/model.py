"""The checked recipe: what the planner and the runner work from.

A :class:`Recipe` is only built when the document passed every static check, so its fields are
well-typed. Step fields keep their raw templates; :func:`wanrecipe.recipe.render.render_step`
turns them into request values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from ..errors import Diagnostic
from .dag import Graph
from .loader import Location

ParamType = Literal["image", "string", "number", "integer", "boolean", "list"]


_NOWHERE = Location("")


@dataclass(frozen=True)
class Param:
    """A declared param (``params:`` entry)."""

    name: str
    type: ParamType
    has_default: bool = False
    default: object = None
    description: str = ""
    enum: tuple[object, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    location: Location = _NOWHERE
    #: For ``type: list``: what each item is (its type, enum and bounds); None otherwise.
    items: Param | None = None


@dataclass(frozen=True)
class Step:
    """One step as written, defaults merged in.

    ``image``, ``mask``, ``prompt`` and string values in ``parameters`` may be templates.
    ``sources`` maps field names (``"image"``, ``"parameters.n"``, ``"needs"``, ...) to where they
    were written (a parameter inherited from ``defaults:`` points there).
    """

    id: str
    function: str
    image: str
    mask: str | None
    prompt: str
    parameters: Mapping[str, object]
    needs: tuple[str, ...]
    #: ``retry:`` as written: extra attempts after the first, None when unset.
    retries: int | None
    #: Seconds (``timeout:`` parsed; 600 when unset).
    timeout: float
    description: str = ""
    location: Location = _NOWHERE
    sources: Mapping[str, Location] = field(default_factory=dict)
    #: Step ids this step's templates refer to (``needs`` excluded).
    references: frozenset[str] = frozenset()

    def location_of(self, name: str) -> Location:
        """Where field ``name`` was written; the step itself when it was not."""
        return self.sources.get(name, self.location)


@dataclass(frozen=True)
class Budget:
    """``budget:``: the most a run (a batch: all its rows together) may cost."""

    #: US dollars, exact (the YAML number as written, e.g. ``0.5`` -> ``Decimal("0.5")``).
    max_usd: Decimal
    location: Location = _NOWHERE


@dataclass(frozen=True)
class Recipe:
    """A recipe that passed the static checks, with its params bound."""

    #: Absolute path of the recipe file.
    path: Path
    #: The file as named in messages (as the user gave it).
    file: str
    name: str
    description: str
    #: Bound param values, typed (image params: absolute path, URL or data URI, as a string).
    params: Mapping[str, object]
    param_decls: Mapping[str, Param]
    #: Steps in declared order (look one up with :meth:`step`).
    steps: tuple[Step, ...]
    #: Output name -> template (``"{{ steps.widen.image }}"``).
    outputs: Mapping[str, str]
    output_locations: Mapping[str, Location]
    graph: Graph
    #: Warnings found while loading (unused params, ...).
    warnings: tuple[Diagnostic, ...] = ()
    #: ``budget:`` when the recipe sets one (enforced by the runner; ``--max-cost`` wins).
    budget: Budget | None = None
    _by_id: Mapping[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.id: s for s in self.steps})

    def step(self, step_id: str) -> Step:
        """The step with this id. Raises KeyError."""
        return self._by_id[step_id]

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    @property
    def base_dir(self) -> Path:
        """Relative paths in the recipe are relative to this directory."""
        return self.path.parent

    def deps(self, step_id: str) -> tuple[str, ...]:
        """The steps ``step_id`` waits for (template references plus ``needs``)."""
        return self.graph.deps(step_id)

    def dependents(self, step_id: str) -> tuple[str, ...]:
        return self.graph.dependents(step_id)

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Step ids grouped by dependency level, each level in declared order."""
        return self.graph.levels()

    def display_path(self, path: Path) -> str:
        """``path`` relative to the recipe directory when inside it (stable in messages)."""
        try:
            rel = os.path.relpath(path, self.base_dir)
        except ValueError:
            return str(path)
        return str(path) if rel.startswith("..") else rel
