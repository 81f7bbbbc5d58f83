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


OnSkipped = Literal["skip", "run"]


@dataclass(frozen=True)
class Fanout:
    """Which instance of a ``foreach:`` or ``matrix:`` step this is, and its values."""

    kind: Literal["foreach", "matrix"]
    #: 0-based position in the step's list (or in the matrix's product); the id's suffix.
    index: int
    #: How many instances the list or product has (skipped ones included).
    length: int
    #: ``foreach``: the item, when known before the run (a list param's or literal list's).
    item: object = None
    #: ``foreach`` over another step's images: (that step's instance id, image index).
    item_from: tuple[str, int] | None = None
    #: ``matrix``: name -> value of this combination, in declared order.
    matrix: Mapping[str, object] | None = None

    def loop(self) -> dict[str, object]:
        """``loop.*`` in templates (Jinja's names)."""
        i, n = self.index, self.length
        return {
            "index": i + 1,
            "index0": i,
            "length": n,
            "first": i == 0,
            "last": i == n - 1,
            "revindex": n - i,
            "revindex0": n - i - 1,
        }

    def describe(self) -> dict[str, object]:
        """For records and plans: ``{"index": 2, "item": ...}`` or ``{..., "matrix": {...}}``."""
        out: dict[str, object] = {"index": self.index}
        if self.kind == "matrix":
            out["matrix"] = dict(self.matrix or {})
        elif self.item_from is not None:
            out["item"] = f"steps.{self.item_from[0]}.images[{self.item_from[1]}]"
        else:
            out["item"] = self.item
        return out


@dataclass(frozen=True)
class Skip:
    """A step (or one instance of a fanned-out step) that will not run, and why."""

    id: str
    #: The step as written (the id without the instance suffix).
    group: str
    function: str
    #: ``if: params.upscale`` is false / needs 'upscale', which is skipped / foreach over an
    #: empty list.
    reason: str
    location: Location = _NOWHERE
    fanout: Fanout | None = None


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
    #: The step as written: the id without the instance suffix (``styles`` for ``styles.2``).
    group: str = ""
    #: Set on each instance of a ``foreach:`` / ``matrix:`` step.
    fanout: Fanout | None = None
    #: ``foreach:``, ``matrix:`` and ``if:`` as written (None when absent).
    foreach: object = None
    matrix: Mapping[str, object] | None = None
    condition: object = None
    #: ``on_skipped:``: what happens when a step this one refers to or needs is skipped.
    on_skipped: OnSkipped = "skip"
    #: The step whose images ``foreach:`` goes over (``foreach: "{{ steps.x.images }}"``).
    foreach_source: str | None = None

    @property
    def name(self) -> str:
        """The step as written in the recipe (its group)."""
        return self.group or self.id

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
    #: Step as written -> the ids of its instances that run, in order (``(id,)`` for a step
    #: without foreach/matrix; empty when every instance is skipped).
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Steps and instances that will not run (``if:`` false, a skipped dependency, an empty
    #: foreach list), by id, in declared order.
    skipped: Mapping[str, Skip] = field(default_factory=dict)
    #: The steps as written (before foreach/matrix/if), in declared order; () means
    #: ``steps`` (a recipe without fan-out).
    declared: tuple[Step, ...] = ()
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

    def instances(self, name: str) -> tuple[str, ...]:
        """The ids that run for step ``name`` as written (or for one instance id)."""
        if name in self.groups:
            return self.groups[name]
        return (name,) if name in self._by_id else ()

    @property
    def steps_as_written(self) -> tuple[Step, ...]:
        return self.declared or self.steps

    def is_skipped(self, name: str) -> bool:
        """Whether step ``name`` as written runs no instance at all."""
        return name in self.groups and not self.groups[name]

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
