"""The recipe language: loading, schema, templates, graph, params, fan-out, rendering,
planning and batch rows.

Pure: no I/O beyond reading the recipe, params files and image headers. The runner uses
:func:`render_step` / :func:`render_outputs` and the :class:`Recipe` model.
"""

from __future__ import annotations

from ..durations import parse_duration
from .dag import CycleError, Graph
from .loader import Location
from .model import Budget, Fanout, Param, Recipe, Skip, Step
from .plan import Plan, PlannedImage, PlannedStep, Quota, estimate_wall_time, make_plan
from .render import RenderedStep, render_outputs, render_step
from .rows import BatchRow, RowRange, each_rows, load_rows, param_declarations

__all__ = [
    "BatchRow",
    "Budget",
    "CycleError",
    "Fanout",
    "Graph",
    "Location",
    "Param",
    "Plan",
    "PlannedImage",
    "PlannedStep",
    "Quota",
    "Recipe",
    "RenderedStep",
    "RowRange",
    "Skip",
    "Step",
    "each_rows",
    "estimate_wall_time",
    "load_rows",
    "make_plan",
    "param_declarations",
    "parse_duration",
    "render_outputs",
    "render_step",
]
