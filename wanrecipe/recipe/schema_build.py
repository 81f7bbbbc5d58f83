"""Build the recipe JSON Schema from the wire facts, so the two cannot drift apart.

The shipped file ``wanrecipe/schema/recipe.schema.json`` is this module's output; a test checks
they are equal. Regenerate with ``python -m wanrecipe.recipe.schema_build``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .. import wire

SCHEMA_ID = "https://github.com/wanrecipe/wanrecipe/raw/main/schema/recipe.schema.json"
STEP_ID_PATTERN = "^[a-z][a-z0-9_-]*$"
PARAM_NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_]*$"
OUTPUT_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: A string holding at least one ``{{ expression }}``; its value is checked after rendering.
TEMPLATE_PATTERN = r"\{\{[\s\S]*\}\}"
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h)\s*)+$|^\s*\d+(\.\d+)?\s*$"
PARAM_TYPES = ("image", "string", "number", "integer", "boolean", "list")
ITEM_TYPES = ("image", "string", "number", "integer", "boolean")
#: Functions whose prompt may be empty (API guide §2.1); every other one needs a prompt.
OPTIONAL_PROMPT_FUNCTIONS = ("colorization", "description_edit_with_mask")
DEFAULT_TIMEOUT = "10m"
DEFAULT_MAX_INSTANCES = 1000
MAX_INSTANCES_LIMIT = 100_000
MAX_RETRY = 10

Schema = dict[str, Any]
#: "Must not be present". Not `false`: jsonschema then loses the key from the error path.
REFUSED: Schema = {"not": {}}


def api_parameter(spec: wire.ParamSpec) -> Schema:
    """One API parameter: its native type and range, or a template string checked later."""
    functions = [f for f, names in wire.FUNCTION_PARAMS.items() if spec.name in names]
    used_by = "every function" if len(functions) == len(wire.FUNCTIONS) else ", ".join(functions)
    schema: Schema = {
        "title": spec.name,
        "description": f"{spec.description} Used by {used_by}."
        + (f" Default {json.dumps(spec.default)}." if spec.default is not None else "")
        + ' May be a template such as "{{ params.x }}", checked after rendering.',
        # Range keywords apply to numbers only and `pattern` to strings only, so one schema
        # says "a number in range, or a template" without anyOf (and keeps errors readable).
        "type": [spec.type, "string"],
        "pattern": TEMPLATE_PATTERN,
    }
    if spec.minimum is not None:
        schema["minimum"] = spec.minimum
    if spec.maximum is not None:
        schema["maximum"] = spec.maximum
    example: object = spec.default if spec.default is not None else 42
    if spec.name in wire.EXPAND_PARAMS:
        example = 1.5
    elif spec.name == "upscale_factor":
        example = 2
    schema["examples"] = [example]
    return schema


def _parameters() -> Schema:
    return {
        "title": "API parameters",
        "description": "The request's `parameters` object, with the API's own names. Each "
        "function accepts n, seed and watermark plus its own (strength, *_scale, "
        "upscale_factor, is_sketch).",
        "type": "object",
        "properties": {name: {"$ref": f"#/$defs/api_parameter/{name}"} for name in wire.PARAMS},
        "additionalProperties": False,
    }


def _template_string(title: str, description: str, examples: list[str]) -> Schema:
    return {
        "title": title,
        "description": description,
        "type": "string",
        "minLength": 1,
        "examples": examples,
    }


def _step() -> Schema:
    per_function: list[Schema] = []
    for function in wire.FUNCTIONS:
        accepted = wire.FUNCTION_PARAMS[function]
        then: Schema = {
            "properties": {
                "parameters": {
                    "properties": {name: True for name in accepted},
                    "additionalProperties": False,
                }
            }
        }
        if function in wire.MASK_FUNCTIONS:
            then["required"] = ["mask"]
        else:
            then["properties"]["mask"] = REFUSED
        if function not in OPTIONAL_PROMPT_FUNCTIONS:
            then.setdefault("required", []).append("prompt")
        per_function.append(
            {
                "if": {"properties": {"function": {"const": function}}, "required": ["function"]},
                "then": then,
            }
        )
    return {
        "title": "Step",
        "description": "One call of the image-edit API. The key is the step id.",
        "type": "object",
        "required": ["function", "image"],
        "properties": {
            "function": {
                "title": "function",
                "description": "The API function. "
                + " ".join(f"{f}: {s}" for f, s in wire.FUNCTION_SUMMARIES.items()),
                "enum": list(wire.FUNCTIONS),
                "examples": ["super_resolution"],
            },
            "description": {
                "title": "description",
                "description": "What this step is for (shown by plan; never sent).",
                "type": "string",
            },
            "image": _template_string(
                "image",
                "The input image: a path relative to the recipe file, an http(s) URL, a data "
                "URI, or a template such as {{ params.photo }} or {{ steps.<id>.image }}.",
                ["{{ params.photo }}", "{{ steps.colorize.image }}", "images/photo.png"],
            ),
            "mask": _template_string(
                "mask",
                "The mask (white = edit, black = keep), same size as the image. Required by "
                "description_edit_with_mask, refused by every other function.",
                ["images/mask.png", "{{ params.mask }}"],
            ),
            "prompt": {
                "title": "prompt",
                "description": "What to do, in Chinese or English, at most 800 characters after "
                "rendering (the API silently cuts the rest). May be empty for colorization and "
                "description_edit_with_mask.",
                "type": "string",
                "examples": ["Image super resolution"],
            },
            "parameters": _parameters(),
            "needs": {
                "title": "needs",
                "description": "Step ids that must finish first even though no template refers "
                "to them (a single id or a list).",
                "type": ["string", "array"],
                "pattern": STEP_ID_PATTERN,
                "items": {"type": "string", "pattern": STEP_ID_PATTERN},
                "uniqueItems": True,
                "examples": [["colorize"]],
            },
            "retry": {"$ref": "#/$defs/retry"},
            "timeout": {"$ref": "#/$defs/duration"},
            "foreach": {
                "title": "foreach",
                "description": "Run this step once per item: a list, a list param "
                "({{ params.styles }}) or another step's images ({{ steps.gen.images }}, that "
                "step with n > 1). Templates see item and loop.index (1-based), loop.index0, "
                "loop.length; the instances are <id>.0, <id>.1, ... and steps.<id>.images holds "
                "all their images in order.",
                "type": ["array", "string"],
                "pattern": TEMPLATE_PATTERN,
                "examples": [["ink wash", "gold foil"], "{{ params.styles }}"],
            },
            "matrix": {
                "title": "matrix",
                "description": "Run this step once per combination of the named lists (the "
                "last name varies fastest); templates see matrix.<name> and loop.*. Each list "
                "is written out or a template such as {{ params.strengths }}.",
                "type": "object",
                "propertyNames": {"pattern": PARAM_NAME_PATTERN},
                "additionalProperties": {
                    "type": ["array", "string"],
                    "pattern": TEMPLATE_PATTERN,
                },
                "examples": [{"style": ["ink", "oil"], "strength": [0.3, 0.6, 0.9]}],
            },
            "if": {
                "title": "if",
                "description": "Run this step only when this Jinja expression is true, e.g. "
                "params.upscale or item != 'oil'. Decided before the run from params, item, "
                "loop and matrix (never step results).",
                "type": ["string", "boolean"],
                "examples": ["params.upscale", "{{ loop.index <= 3 }}"],
            },
            "on_skipped": {
                "title": "on_skipped",
                "description": "When a step this one refers to or needs is skipped: skip "
                "(default) skips this one too; run runs it, the skipped step's images being [] "
                "and its image none ({{ steps.up.image or steps.color.image }}).",
                "enum": ["skip", "run"],
            },
        },
        "additionalProperties": False,
        "allOf": per_function,
    }


def _param() -> Schema:
    typed_defaults: list[Schema] = [
        {
            "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {
                "properties": {
                    "default": {"type": json_type},
                    "enum": {"items": {"type": json_type}},
                }
            },
        }
        for kind, json_type in (
            ("image", "string"),
            ("string", "string"),
            ("number", "number"),
            ("integer", "integer"),
            ("boolean", "boolean"),
        )
    ]
    typed_defaults.append(
        {
            "if": {
                "properties": {"type": {"enum": ["image", "string", "boolean", "list"]}},
                "required": ["type"],
            },
            "then": {"properties": {"minimum": REFUSED, "maximum": REFUSED}},
        }
    )
    typed_defaults.append(
        {
            "if": {"properties": {"type": {"const": "list"}}, "required": ["type"]},
            "then": {"properties": {"default": {"type": "array"}, "enum": REFUSED}},
            "else": {"properties": {"items": REFUSED}},
        }
    )
    return {
        "title": "Param",
        "description": "A value the user can set with -p name=value or --params file.",
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {
                "title": "type",
                "description": "image (a path relative to the recipe, a URL or a data URI), "
                "string, number, integer, boolean, or list (of items as `items` says; "
                "-p styles=a,b,c).",
                "enum": list(PARAM_TYPES),
            },
            "items": {
                "title": "items",
                "description": "For a list param: what each item is (type, enum, bounds). "
                "Default: strings.",
                "type": "object",
                "properties": {
                    "type": {"enum": list(ITEM_TYPES)},
                    "enum": {"type": "array", "minItems": 1, "uniqueItems": True},
                    "minimum": {"type": "number"},
                    "maximum": {"type": "number"},
                },
                "additionalProperties": False,
                "examples": [{"type": "string", "enum": ["ink", "oil"]}],
            },
            "default": {
                "title": "default",
                "description": "Used when the param is not given; without one the param is "
                "required.",
            },
            "description": {"title": "description", "type": "string"},
            "enum": {
                "title": "enum",
                "description": "The only values allowed.",
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
            },
            "minimum": {"title": "minimum", "type": "number"},
            "maximum": {"title": "maximum", "type": "number"},
        },
        "additionalProperties": False,
        "allOf": typed_defaults,
        "examples": [{"type": "integer", "default": 2, "minimum": 1, "maximum": 4}],
    }


def _defaults() -> Schema:
    properties: Schema = {name: {"$ref": f"#/$defs/api_parameter/{name}"} for name in wire.PARAMS}
    properties["retry"] = {"$ref": "#/$defs/retry"}
    properties["timeout"] = {"$ref": "#/$defs/duration"}
    return {
        "title": "Defaults",
        "description": "Merged into every step: an API parameter goes to each step whose "
        "function accepts it (a step's own value wins); retry and timeout go to every step.",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "examples": [{"seed": 7, "timeout": "10m"}],
    }


def build_schema() -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "wanrecipe recipe",
        "description": "A YAML recipe chaining Wan 2.1 image edits (wanx2.1-imageedit). "
        "Reference: the README of wanrecipe, section Recipes.",
        "type": "object",
        "required": ["version", "steps"],
        "properties": {
            "version": {
                "title": "version",
                "description": "Recipe format version; always 1.",
                "const": 1,
            },
            "name": {
                "title": "name",
                "description": "Short name (run directories and reports use it).",
                "type": "string",
                "minLength": 1,
                "examples": ["restore-old-photo"],
            },
            "description": {"title": "description", "type": "string"},
            "params": {
                "title": "params",
                "description": "Inputs of the recipe, used in templates as {{ params.<name> }}.",
                "type": "object",
                "propertyNames": {"pattern": PARAM_NAME_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/param"},
            },
            "defaults": {"$ref": "#/$defs/defaults"},
            "steps": {
                "title": "steps",
                "description": "The edits, keyed by step id. Order is free: dependencies come "
                "from {{ steps.<id>... }} references and needs.",
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": STEP_ID_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/step"},
            },
            "max_instances": {
                "title": "max_instances",
                "description": "The most instances one foreach:/matrix: step may expand into "
                f"(default {DEFAULT_MAX_INSTANCES}); a guard against a mistyped list.",
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_INSTANCES_LIMIT,
            },
            "budget": {
                "title": "budget",
                "description": "Spending limit of a run (a batch: of all its rows). plan refuses "
                "an estimate over it; a run stops before a submit would cross it. "
                "--max-cost on the command line wins.",
                "type": "object",
                "required": ["max_usd"],
                "properties": {
                    "max_usd": {
                        "title": "max_usd",
                        "description": "US dollars at the model's price per billed image.",
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "examples": [0.5],
                    }
                },
                "additionalProperties": False,
            },
            "outputs": {
                "title": "outputs",
                "description": "Named results, e.g. final: '{{ steps.widen.image }}'.",
                "type": "object",
                "propertyNames": {"pattern": OUTPUT_NAME_PATTERN},
                "additionalProperties": _template_string(
                    "output", "A template naming step outputs.", ["{{ steps.widen.image }}"]
                ),
            },
        },
        "additionalProperties": False,
        "$defs": {
            "param": _param(),
            "defaults": _defaults(),
            "step": _step(),
            "api_parameter": {name: api_parameter(spec) for name, spec in wire.PARAMS.items()},
            "retry": {
                "title": "retry",
                "description": "How many times a transiently failed task (InternalError*, "
                "timeouts) is submitted again: 0 never, 2 means up to 3 attempts.",
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_RETRY,
                "examples": [2],
            },
            "duration": {
                "title": "timeout",
                "description": "Longest wait for one task: seconds, or a duration such as 90s, "
                f"10m, 1h, 1h30m. Default {DEFAULT_TIMEOUT}.",
                "type": ["number", "string"],
                "exclusiveMinimum": 0,
                "pattern": DURATION_PATTERN,
                "examples": ["10m", 90],
            },
        },
    }


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    target = Path(__file__).resolve().parent.parent / "schema" / "recipe.schema.json"
    if argv[1:] == ["--check"]:
        return 0 if target.read_text(encoding="utf-8") == render_schema() else 1
    target.parent.mkdir(exist_ok=True)
    target.write_text(render_schema(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
