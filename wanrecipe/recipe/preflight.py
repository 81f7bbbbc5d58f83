"""Check the image inputs known before the run: local files, data URIs, URL spelling.

Outputs of other steps are unknown at plan time and are checked by the runner instead. Each
file is inspected once (header only) however many steps use it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Diagnostic, ImageInputError
from ..images import (
    ImageInfo,
    input_problems,
    inspect_bytes,
    inspect_file,
    mask_problems,
    parse_data_uri,
)
from .model import Recipe
from .render import ImageInput, RenderedStep


class InputChecker:
    """Inspects inputs for one recipe, caching by path."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._cache: dict[str, ImageInfo | str] = {}
        # A bad file is reported once, at its first use, not once per step that uses it.
        self._reported: set[str] = set()

    def check(self, rendered: RenderedStep) -> list[Diagnostic]:
        step = self.recipe.step(rendered.id)
        problems: list[Diagnostic] = []
        infos: dict[str, ImageInfo | None] = {}
        for name in ("image", "mask"):
            value = rendered.image if name == "image" else rendered.mask
            if value is None:
                continue
            where = step.location_of(name)
            info, messages = self._inspect(value)
            infos[name] = info
            for message, hint in messages:
                problems.append(
                    Diagnostic(
                        where.file,
                        where.line,
                        where.column,
                        f"steps.{rendered.id}.{name}",
                        message,
                        hint=hint,
                    )
                )
        image, mask = infos.get("image"), infos.get("mask")
        if image is not None and mask is not None:
            where = step.location_of("mask")
            for message in mask_problems(image, mask):
                problems.append(
                    Diagnostic(
                        where.file,
                        where.line,
                        where.column,
                        f"steps.{rendered.id}.mask",
                        message,
                        hint="resize the mask to the image, or draw it on a copy of the image",
                    )
                )
        return problems

    def _inspect(self, value: ImageInput) -> tuple[ImageInfo | None, list[tuple[str, str | None]]]:
        if isinstance(value, Path):
            return self._file(value)
        if not isinstance(value, str):
            return None, []  # another step's output: checked by the runner
        if value.startswith("data:"):
            try:
                _, data = parse_data_uri(value)
                info = inspect_bytes(data)
            except ImageInputError as exc:
                return None, [(f"data URI: {exc}", None)]
            return info, [(f"data URI: {p}", None) for p in input_problems(info)]
        if not value.isascii():
            return None, [
                (
                    "the URL contains non-ASCII characters, which the API refuses",
                    "percent-encode the URL (or rename the file)",
                )
            ]
        return None, []  # a URL: fetched by the service

    def _file(self, path: Path) -> tuple[ImageInfo | None, list[tuple[str, str | None]]]:
        shown = self.recipe.display_path(path)
        key = str(path)
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = inspect_file(path)
            except ImageInputError as exc:
                cached = str(exc).replace(str(path), shown)
            self._cache[key] = cached
        if key in self._reported:
            return (cached if isinstance(cached, ImageInfo) else None), []
        self._reported.add(key)
        if isinstance(cached, str):
            hint = None
            if cached.endswith("no such file"):
                hint = "paths in a recipe are relative to the recipe file"
            return None, [(cached, hint)]
        return cached, [(f"{shown}: {p}", None) for p in input_problems(cached)]
