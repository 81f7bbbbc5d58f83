"""What the report takes from the recipe file, when it is still there: its description, the
step graph (``needs:`` edges included) and each step's rendered prompt and inputs.

``run.json`` alone is enough for a report; this only adds what the record does not keep (the
description, the prompt of a step whose result came from the store). A recipe that no longer
loads, or that no longer has the run's steps, adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import WanRecipeError
from ...recipe.build import build_recipe
from ...recipe.loader import load_file
from ...recipe.params import given_from_mapping
from ...recipe.plan import PlannedImage, check_rendering


@dataclass(frozen=True)
class InputRef:
    """A rendered image input: a step's output or a local file (or a URL, only shown)."""

    step: str | None = None
    index: int = 0
    path: Path | None = None
    text: str = ""


@dataclass(frozen=True)
class RenderedInfo:
    prompt: str
    parameters: dict[str, object]
    image: InputRef | None
    mask: InputRef | None


@dataclass(frozen=True)
class RecipeInfo:
    description: str = ""
    step_descriptions: dict[str, str] = field(default_factory=dict)
    deps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rendered: dict[str, RenderedInfo] = field(default_factory=dict)


def recipe_info(
    recipe_path: str, params: dict[str, Any], step_ids: list[str], *, recipe: Any = None
) -> RecipeInfo:
    """The recipe's facts for the run's steps; an empty RecipeInfo when it cannot be read.
    ``recipe``: the recipe as it was loaded for the run (not read from its file again)."""
    path = Path(recipe_path)
    try:
        if recipe is None:
            if not path.is_file():
                return RecipeInfo()
            doc = load_file(path, str(path))
            if not isinstance(doc.data, dict):
                return RecipeInfo()
            recipe, _ = build_recipe(doc, path, given_from_mapping(params, path.parent))
            if recipe is None:
                return RecipeInfo()
        rendered, _ = check_rendering(recipe)
    except (WanRecipeError, OSError, ValueError, TypeError, KeyError):
        return RecipeInfo()
    known = set(recipe.step_ids)
    if not set(step_ids) <= known:
        # The recipe changed since the run: its graph and prompts would describe another run.
        return RecipeInfo(description=recipe.description or "")
    out: dict[str, RenderedInfo] = {}
    for sid, step in rendered.items():
        out[sid] = RenderedInfo(
            step.prompt, dict(step.parameters), _ref(step.image), _ref(step.mask)
        )
    return RecipeInfo(
        description=recipe.description or "",
        step_descriptions={s.id: s.description or "" for s in recipe.steps},
        deps={sid: tuple(recipe.deps(sid)) for sid in step_ids},
        rendered=out,
    )


def _ref(value: object) -> InputRef | None:
    if value is None:
        return None
    if isinstance(value, PlannedImage):
        return InputRef(step=value.step_id, index=value.index)
    if isinstance(value, Path):
        return InputRef(path=value, text=str(value))
    return InputRef(text=str(value))
