"""wanrecipe: YAML recipes that chain Wan 2.1 image edits, with a local DashScope emulator."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import ValidationReport, load_recipe, plan_recipe, run_batch, validate_recipe
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
from .report.batch_record import BatchRecord, RowRecord
from .report.record import RunRecord
from .runner import BackendChoice, run_recipe

__all__ = [
    "BackendChoice",
    "BackendError",
    "BatchRecord",
    "Diagnostic",
    "ImageInputError",
    "Plan",
    "Recipe",
    "RecipeError",
    "RenderedStep",
    "RowRecord",
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
    "run_batch",
    "run_recipe",
    "validate_recipe",
]
