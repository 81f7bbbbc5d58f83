"""wanrecipe: YAML recipes that chain Wan 2.1 image edits, with a local DashScope emulator."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    BackendError,
    Diagnostic,
    ImageInputError,
    RecipeError,
    RunInterrupted,
    TaskFailed,
    TransportError,
    UsageError,
    WanRecipeError,
)

__all__ = [
    "BackendError",
    "Diagnostic",
    "ImageInputError",
    "RecipeError",
    "RunInterrupted",
    "TaskFailed",
    "TransportError",
    "UsageError",
    "WanRecipeError",
    "__version__",
]
