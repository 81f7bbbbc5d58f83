"""wanrecipe: YAML recipes that chain Wan 2.1 image edits, with a local DashScope emulator.

The public names are imported on first use, so ``import wanrecipe`` (and every CLI command)
pays only for what it touches: ``wanrecipe --help`` loads no recipe machinery, ``validate``
no HTTP client.
"""

from __future__ import annotations

import typing

__version__ = "0.1.0"

if typing.TYPE_CHECKING:
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

#: public name -> the module that defines it.
_WHERE: dict[str, str] = {
    "BackendChoice": ".runner",
    "BatchRecord": ".report.batch_record",
    "BackendError": ".errors",
    "Diagnostic": ".errors",
    "ImageInputError": ".errors",
    "Plan": ".recipe.plan",
    "Recipe": ".recipe.model",
    "RecipeError": ".errors",
    "RenderedStep": ".recipe.render",
    "RowRecord": ".report.batch_record",
    "RunRecord": ".report.record",
    "TaskFailed": ".errors",
    "TransportError": ".errors",
    "UsageError": ".errors",
    "ValidationReport": ".api",
    "WanRecipeError": ".errors",
    "load_recipe": ".api",
    "plan_recipe": ".api",
    "render_step": ".recipe.render",
    "run_batch": ".api",
    "run_recipe": ".runner",
    "validate_recipe": ".api",
}

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


def __getattr__(name: str) -> typing.Any:
    from .lazy import load_lazily  # here, not above: `wanrecipe --help` loads no module of ours

    return load_lazily(__name__, _WHERE, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
