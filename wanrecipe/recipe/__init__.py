"""The recipe language: loading, schema, templates, graph, params, rendering and planning.

Pure: no I/O beyond reading the recipe, params files and image headers. The runner uses
:func:`render_step` / :func:`render_outputs` and the :class:`Recipe` model.
"""

from __future__ import annotations

from ..durations import parse_duration
from .dag import CycleError, Graph
from .loader import Location
from .model import Param, Recipe, Step
from .plan import Plan, PlannedImage, PlannedStep, Quota, estimate_wall_time, make_plan
from .render import RenderedStep, render_outputs, render_step

__all__ = [
    "CycleError",
    "Graph",
    "Location",
    "Param",
    "Plan",
    "PlannedImage",
    "PlannedStep",
    "Quota",
    "Recipe",
    "RenderedStep",
    "Step",
    "estimate_wall_time",
    "make_plan",
    "parse_duration",
    "render_outputs",
    "render_step",
]
