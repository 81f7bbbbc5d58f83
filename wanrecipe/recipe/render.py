"""Render one step's templates into the values of an API request.

The runner calls :func:`render_step` when a step's dependencies have finished, passing their
outputs (its own image-reference objects, opaque here); the planner calls it with placeholder
objects. The rendered values are checked against the API's rules, so a parameter that renders
out of range fails here, with the line that set it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import wire
from ..errors import Diagnostic, RecipeError, Severity
from ..images import is_data_uri, is_remote
from ..redact import redact_text
from .loader import Location
from .model import Recipe, Step
from .params import resolve_image_path
from .templating import Scope, TemplateProblem, compile_template

_FAILED = object()  # a template that did not render (its error is recorded)

#: A rendered image input: an absolute local ``Path``, a URL or data URI ``str``, or the
#: object the caller passed in ``outputs`` (returned untouched).
ImageInput = Path | str | object


@dataclass(frozen=True)
class RenderedStep:
    """A step ready to send (after the runner's own preflight of its inputs)."""

    id: str
    function: str
    image: ImageInput
    mask: ImageInput | None
    prompt: str
    #: The request's ``parameters``, native types; ``seed`` only when the recipe gave one.
    parameters: dict[str, object]
    #: Total attempts for transient failures: ``retry: N`` in the recipe gives N + 1; None when
    #: the recipe says nothing (the runner's default applies).
    retry: int | None
    #: Seconds to wait for the task before giving up.
    timeout: float
    #: Non-fatal findings (a prompt the API would cut, ...).
    warnings: tuple[Diagnostic, ...] = field(default=())

    @property
    def attempts(self) -> int | None:
        """Same as ``retry``, by its meaning."""
        return self.retry

    @property
    def n(self) -> int:
        """Images this step asks for (the billing unit)."""
        value = self.parameters.get("n", 1)
        return value if isinstance(value, int) else 1


def template_context(
    recipe: Recipe,
    step: Step | None,
    outputs: Mapping[str, Sequence[object]],
    names: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The names a template sees (documented in README.md, "Templates").

    ``outputs`` is keyed by step id (an instance id for a fanned-out step); ``names`` are the
    steps as written that templates may refer to (default: those in ``outputs``).
    ``steps.<name>.images`` is every image of every instance of ``name`` in instance order
    (``[]`` for a skipped step), ``steps.<name>.image`` the first (none when there is none).
    """
    wanted = list(outputs) if names is None else names
    steps: dict[str, Scope] = {}
    groups = recipe.groups
    for name in wanted:
        ids = groups.get(name)
        if ids is None or ids == (name,):
            images = list(outputs.get(name, ()))
        else:
            images = [image for sid in ids for image in outputs.get(sid, ())]
        steps[name] = Scope(
            f"steps.{name}", {"image": images[0] if images else None, "images": images}
        )
    context: dict[str, Any] = {
        "params": Scope("params", recipe.params),
        "steps": Scope("steps", steps),
        "recipe": Scope("recipe", {"name": recipe.name, "description": recipe.description}),
    }
    if step is not None:
        context["step"] = Scope(
            "step", {"id": step.id, "function": step.function, "name": step.name}
        )
        fanout = step.fanout
        if fanout is not None:
            context["loop"] = Scope("loop", fanout.loop())
            if fanout.kind == "matrix":
                context["matrix"] = Scope("matrix", dict(fanout.matrix or {}))
            elif fanout.item_from is None:
                context["item"] = fanout.item
            else:
                source, index = fanout.item_from
                made = outputs.get(source, ())
                if index >= len(made):
                    raise RecipeError(
                        [
                            _diag(
                                step.location_of("foreach"),
                                f"steps.{step.id}.foreach",
                                f"{source} made {len(made)} image(s), not the {index + 1} "
                                "its n asked for",
                            )
                        ]
                    )
                context["item"] = made[index]
    return context


def render_step(
    recipe: Recipe, step_id: str, outputs: Mapping[str, Sequence[object]]
) -> RenderedStep:
    """Render ``step_id`` given the outputs of finished steps. Raises RecipeError.

    ``outputs[x]`` are step x's output images in order: ``{{ steps.x.image }}`` is
    ``outputs["x"][0]`` and ``{{ steps.x.images }}`` the list.
    """
    step = recipe.step(step_id)
    missing = [d for d in recipe.deps(step_id) if d not in outputs or not outputs[d]]
    if missing:
        raise RecipeError(
            [_diag(step.location, f"steps.{step_id}", f"rendered before {missing[0]!r} finished")]
        )
    # Only dependencies can be referenced (references are edges), so only they go in the
    # context: building it stays O(deps) however many steps have finished. A skipped step
    # (on_skipped: run) is there with no images.
    context = template_context(
        recipe, step, {d: outputs[d] for d in recipe.deps(step_id)}, step.references
    )
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []

    def render(name: str, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return compile_template(value).render(context)
        except TemplateProblem as exc:
            errors.append(
                _diag(step.location_of(name), f"steps.{step_id}.{name}", exc.message, exc.hint)
            )
            return _FAILED

    upstream = [image for d in recipe.deps(step_id) for image in outputs[d]]
    image = _image(recipe, step, "image", render("image", step.image), errors, upstream)
    mask = None
    if step.mask is not None:
        mask = _image(recipe, step, "mask", render("mask", step.mask), errors, upstream)
    prompt_value = render("prompt", step.prompt)
    prompt = "" if prompt_value is None or prompt_value is _FAILED else str(prompt_value)
    if len(prompt) > wire.PROMPT_MAX_CHARS:
        warnings.append(
            _diag(
                step.location_of("prompt"),
                f"steps.{step_id}.prompt",
                f"{len(prompt)} characters; the API silently cuts prompts after "
                f"{wire.PROMPT_MAX_CHARS}",
                "shorten the prompt: everything after character 800 is ignored",
                severity="warning",
            )
        )
    parameters: dict[str, object] = {}
    for name, raw in step.parameters.items():
        value = render(f"parameters.{name}", raw)
        if value is _FAILED:
            continue
        try:
            parameters[name] = check_parameter(name, value)
        except ValueError as exc:
            errors.append(
                _diag(
                    step.location_of(f"parameters.{name}"),
                    f"steps.{step_id}.parameters.{name}",
                    str(exc),
                    _range_hint(name),
                )
            )
    if errors:
        raise RecipeError(errors + warnings)
    return RenderedStep(
        id=step.id,
        function=step.function,
        image=image,
        mask=mask,
        prompt=prompt,
        parameters=parameters,
        retry=None if step.retries is None else step.retries + 1,
        timeout=step.timeout,
        warnings=tuple(warnings),
    )


def render_outputs(recipe: Recipe, outputs: Mapping[str, Sequence[object]]) -> dict[str, object]:
    """The recipe's ``outputs:``, rendered (native values: an image object, a list, ...).

    ``outputs`` holds the finished steps' images by step id. An output is left out when a step
    it refers to made nothing (it failed, or every instance failed) or when every step it
    refers to was skipped, so a partly failed run still reports what it made. A skipped step
    renders as no images (``[]``, ``image`` none); a fanned-out step as the images of its
    instances that finished. None values are dropped (from lists too).
    """
    result: dict[str, object] = {}
    errors: list[Diagnostic] = []
    for name, value in recipe.outputs.items():
        template = compile_template(value)
        refs = template.steps
        live = [r for r in refs if not recipe.is_skipped(r)]
        if refs and not live:
            continue
        if any(not any(outputs.get(sid) for sid in recipe.instances(r)) for r in live):
            continue
        context = template_context(recipe, None, outputs, refs)
        try:
            rendered = template.render(context)
        except TemplateProblem as exc:
            errors.append(_diag(recipe.output_locations[name], f"outputs.{name}", exc.message))
            continue
        if isinstance(rendered, list | tuple):
            rendered = [v for v in rendered if v is not None]
        if rendered is not None:
            result[name] = rendered
    if errors:
        raise RecipeError(errors)
    return result


def check_parameter(name: str, value: object) -> object:
    """``value`` as the API's type for parameter ``name``, in range. Raises ValueError."""
    spec = wire.PARAMS[name]
    if spec.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError(f"expected true or false, got {value!r}")
    number: int | float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(
            f"expected {'an integer' if spec.type == 'integer' else 'a number'}, got {value!r}"
        )
    if isinstance(value, str):
        try:
            number = int(value.strip()) if spec.type == "integer" else float(value.strip())
        except ValueError:
            kind = "an integer" if spec.type == "integer" else "a number"
            raise ValueError(f"expected {kind}, got {value!r}") from None
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        # NaN compares false with every bound: it would pass the range check below.
        raise ValueError(f"expected a finite number, got {number!r}")
    if spec.type == "integer" and isinstance(number, float):
        if not number.is_integer():
            raise ValueError(f"expected an integer, got {number!r}")
        number = int(number)
    if spec.minimum is not None and number < spec.minimum:
        raise ValueError(f"{number!r} is less than the minimum of {spec.minimum}")
    if spec.maximum is not None and number > spec.maximum:
        raise ValueError(f"{number!r} is greater than the maximum of {spec.maximum}")
    return number


def _image(
    recipe: Recipe,
    step: Step,
    name: str,
    value: object,
    errors: list[Diagnostic],
    upstream: Sequence[object],
) -> ImageInput:
    if value is _FAILED:
        return ""  # the render error is already recorded
    if value is None:
        errors.append(
            _diag(
                step.location_of(name),
                f"steps.{step.id}.{name}",
                "renders to none (a skipped step has no image)",
                "fall back to another image: {{ steps.<skipped>.image or steps.<other>.image }}",
            )
        )
        return ""
    if isinstance(value, list | tuple):
        errors.append(
            _diag(
                step.location_of(name),
                f"steps.{step.id}.{name}",
                f"expected one image, got a list of {len(value)}",
                "use steps.<id>.image, or steps.<id>.images[i] for one of several outputs",
            )
        )
        return ""
    if isinstance(value, Path):
        return value if value.is_absolute() else recipe.base_dir / value
    if not isinstance(value, str):
        if any(value is image for image in upstream):
            return value  # the runner's own image reference, untouched
        errors.append(
            _diag(
                step.location_of(name),
                f"steps.{step.id}.{name}",
                f"expected an image path, URL or step output, got {value!r}",
            )
        )
        return ""
    text = value.strip()
    if not text:
        errors.append(
            _diag(step.location_of(name), f"steps.{step.id}.{name}", "renders to an empty string")
        )
        return ""
    if is_remote(text) or is_data_uri(text):
        return text
    return Path(resolve_image_path(text, recipe.base_dir))


def _range_hint(name: str) -> str | None:
    spec = wire.PARAMS[name]
    if spec.minimum is None:
        return None
    return f"{name} must be between {spec.minimum} and {spec.maximum}"


def _diag(
    where: Location,
    dotted: str,
    message: str,
    hint: str | None = None,
    *,
    severity: Severity = "error",
) -> Diagnostic:
    return Diagnostic(
        where.file, where.line, where.column, dotted, redact_text(message), severity, hint=hint
    )
