"""wanrecipe: YAML recipes that chain Wan 2.1 image edits, with a local DashScope emulator."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import ValidationReport, load_recipe, plan_recipe, validate_recipe
from .errors import (
    BackendError,
    Diagnostic,
    ImageInputError,
    RecipeError,
    TaskFailed,
    TransportError,
    UsageError,
    WanRecipeError,
)
from .recipe.model import Recipe
from .recipe.plan import Plan
from .recipe.render import RenderedStep, render_step
from .report.record import RunRecord
from .runner import BackendChoice, run_recipe

__all__ = [
    "BackendChoice",
    "BackendError",
    "Diagnostic",
    "ImageInputError",
    "Plan",
    "Recipe",
    "RecipeError",
    "RenderedStep",
    "RunRecord",
    "TaskFailed",
    "TransportError",
    "UsageError",
    "ValidationReport",
    "WanRecipeError",
    "__version__",
    "load_recipe",
    "plan_recipe",
    "render_step",
    "run_recipe",
    "validate_recipe",
]
