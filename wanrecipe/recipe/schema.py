"""Check a loaded document against the shipped JSON Schema; turn each error into a Diagnostic.

jsonschema's messages are written for schema authors. Here each one becomes a sentence for the
recipe author, pinned to the file position of the offending value (or key), with a hint when the
fix is known.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from .. import wire
from ..errors import Diagnostic
from ..redact import redact_text
from .loader import Document, Location, PathKey

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def schema_text() -> str:
    """The schema as shipped in the package (``wanrecipe/schema/recipe.schema.json``)."""
    return (resources.files("wanrecipe") / "schema" / "recipe.schema.json").read_text("utf-8")


@cache
def recipe_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@cache
def full_validator() -> Any:
    """A validator for the schema exactly as shipped."""
    return jsonschema.Draft202012Validator(recipe_schema())


@cache
def _split_validators() -> tuple[Any, dict[str, Any], Any]:
    """(document, step per function, step of unknown function) validators.

    Same verdicts as the shipped schema (a test checks it), but each step is checked only
    against its own function's rules instead of evaluating the ten if/then branches, which
    makes a 1,000-step recipe several times faster to check.
    """
    root = copy.deepcopy(recipe_schema())
    step = root["$defs"]["step"]
    branches = step.pop("allOf")
    root["properties"]["steps"]["additionalProperties"] = {"type": "object"}
    per_function: dict[str, Any] = {}
    for branch in branches:
        function = branch["if"]["properties"]["function"]["const"]
        then = branch["then"]
        special = copy.deepcopy(step)
        accepted = then["properties"]["parameters"]["properties"]
        parameters = special["properties"]["parameters"]
        parameters["properties"] = {
            k: v for k, v in parameters["properties"].items() if k in accepted
        }
        for key, value in then["properties"].items():
            if key != "parameters":
                special["properties"][key] = value
        special["required"] = [*special["required"], *then.get("required", [])]
        per_function[function] = _sub_validator(root, special)
    return (
        jsonschema.Draft202012Validator(root),
        per_function,
        _sub_validator(recipe_schema(), recipe_schema()["$defs"]["step"]),
    )


def _sub_validator(root: dict[str, Any], schema: dict[str, Any]) -> Any:
    defs = {**root["$defs"], "_this": schema}
    return jsonschema.Draft202012Validator(
        {"$schema": root["$schema"], "$defs": defs, "$ref": "#/$defs/_this"}
    )


def _schema_errors(data: Any) -> Iterable[tuple[PathKey, Any]]:
    document, per_function, unknown = _split_validators()
    for error in document.iter_errors(data):
        yield (), error
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, dict):
        return
    for sid, step in steps.items():
        if not isinstance(step, dict):
            continue  # the document validator reported it
        function = step.get("function")
        validator = per_function.get(function, unknown) if isinstance(function, str) else unknown
        for error in validator.iter_errors(step):
            yield ("steps", sid), error


def check_document(doc: Document) -> list[Diagnostic]:
    """Every schema violation in ``doc``, one Diagnostic each, in file order."""
    found: dict[tuple[str, int, int, str, str], Diagnostic] = {}
    for path, kind in doc.source.odd_keys:
        where = doc.source.key_at(path)
        diag = Diagnostic(
            where.file,
            where.line,
            where.column,
            dotted(path),
            f"key {path[-1]!r} is read as {kind}, not as a name",
            hint=f"quote it: '{path[-1]}':",
        )
        found[(diag.file, diag.line, diag.column, diag.path, diag.message)] = diag
    if found:
        return sorted(found.values())  # the schema would misreport such keys
    for prefix, top in _schema_errors(doc.data):
        for error in _leaf_errors([top]):
            for diag in _diagnose(error, doc, prefix):
                found.setdefault((diag.file, diag.line, diag.column, diag.path, diag.message), diag)
    return sorted(found.values())


def _leaf_errors(errors: Iterable[Any]) -> Iterable[Any]:
    # An `if/then` or `$ref` error carries its cause in `context`; report the cause.
    for error in errors:
        if error.context:
            yield from _leaf_errors(error.context)
        else:
            yield error


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _diagnose(error: Any, doc: Document, prefix: PathKey = ()) -> list[Diagnostic]:
    path: PathKey = (*prefix, *error.absolute_path)
    validator = error.validator
    value = error.validator_value
    instance = error.instance

    def at(where: Location, p: PathKey, message: str, hint: str | None = None) -> Diagnostic:
        return Diagnostic(
            where.file, where.line, where.column, dotted(p), redact_text(message), hint=hint
        )

    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in instance if k not in error.schema.get("properties", {})]
        return [_unknown_key(doc, path, key, allowed, at) for key in extra]
    if validator == "required":
        missing = next((k for k in value if k not in instance), value[0])
        return [at(doc.source.at(path), path, *_missing(doc, path, missing))]
    if validator == "not" and value == {}:
        return [_refused(doc, path, at)]
    if validator in ("exclusiveMinimum", "exclusiveMaximum"):
        side = "greater" if validator == "exclusiveMinimum" else "less"
        message = f"{instance!r} must be {side} than {value}"
        return [at(doc.source.at(path), path, message, _range_hint(path))]
    if validator in ("minimum", "maximum"):
        return [at(doc.source.at(path), path, error.message, _range_hint(path))]
    if "propertyNames" in error.schema_path:
        return [_bad_name(doc, path, instance, at)]
    if validator == "pattern":
        return [at(doc.source.at(path), path, *_pattern(path, instance))]
    if validator == "type":
        return [at(doc.source.at(path), path, *_wrong_type(path, instance, value))]
    if validator == "enum":
        return [at(doc.source.at(path), path, *_not_in_enum(path, instance, value))]
    if validator == "const" and path == ("version",):
        return [
            at(doc.source.at(path), path, f"unsupported version {instance!r}", "use version: 1")
        ]
    if validator == "minProperties" and path == ("steps",):
        return [at(doc.source.at(path), path, "a recipe needs at least one step")]
    if validator == "minLength":
        return [at(doc.source.at(path), path, "must not be empty")]
    if validator == "uniqueItems":
        return [at(doc.source.at(path), path, "lists the same step twice")]
    return [at(doc.source.at(path), path, error.message)]


def _unknown_key(doc: Document, parent: PathKey, key: str, allowed: list[str], at: Any) -> Any:
    where = doc.source.key_at((*parent, key))
    p = (*parent, key)
    if len(parent) == 3 and parent[0] == "steps" and parent[2] == "parameters":
        function = _function_of(doc, parent[1])
        if key in wire.PARAMS and function in wire.FUNCTION_PARAMS:
            accepted = ", ".join(wire.FUNCTION_PARAMS[function])
            users = [f for f, names in wire.FUNCTION_PARAMS.items() if key in names]
            return at(
                where,
                p,
                f"{function} does not accept {key!r}",
                f"{function} accepts {accepted}; {key} belongs to {', '.join(users)}",
            )
        return at(where, p, f"unknown API parameter {key!r}", _did_you_mean(key, list(wire.PARAMS)))
    what = "field"
    if parent == ("defaults",):
        allowed = [*wire.PARAMS, "retry", "timeout"]
    return at(where, p, f"unknown {what} {key!r}", _did_you_mean(key, allowed))


def _function_of(doc: Document, step_id: str | int) -> str | None:
    try:
        function = doc.data["steps"][step_id]["function"]
    except (KeyError, TypeError, IndexError):
        return None
    return function if isinstance(function, str) else None


def _missing(doc: Document, path: PathKey, key: str) -> tuple[str, str | None]:
    if len(path) == 2 and path[0] == "steps":
        function = _function_of(doc, path[1])
        if key == "mask":
            return (f"{function} needs a mask", "add mask: <path to a black-and-white image>")
        if key == "prompt":
            return (
                f"{function} needs a prompt",
                'say what to do, e.g. prompt: "Image super resolution"',
            )
        if key == "function":
            return ("missing field 'function'", "one of: " + ", ".join(wire.FUNCTIONS))
        if key == "image":
            return (
                "missing field 'image'",
                'give a file path, URL, "{{ params.<name> }}" or "{{ steps.<id>.image }}"',
            )
    if len(path) == 2 and path[0] == "params" and key == "type":
        return ("missing field 'type'", "one of: image, string, number, integer, boolean")
    if path == () and key == "version":
        return ("missing field 'version'", "start the recipe with version: 1")
    return (f"missing field {key!r}", None)


def _refused(doc: Document, path: PathKey, at: Any) -> Any:
    where = doc.source.key_at(path)
    if len(path) == 3 and path[0] == "steps" and path[2] == "mask":
        function = _function_of(doc, path[1])
        return at(
            where,
            path,
            f"{function} does not take a mask",
            "only description_edit_with_mask uses a mask; remove it or change the function",
        )
    if len(path) == 3 and path[0] == "params" and path[2] in ("minimum", "maximum"):
        return at(where, path, "minimum and maximum apply to number and integer params only")
    return at(where, path, "not allowed here")


def _range_hint(path: PathKey) -> str | None:
    name = path[-1] if path else None
    if isinstance(name, str) and name in wire.PARAMS:
        spec = wire.PARAMS[name]
        return f"{name} must be between {spec.minimum} and {spec.maximum}"
    if name == "retry":
        return "retry is how many extra attempts: 0 to 10"
    if name == "timeout":
        return "give a positive duration such as 90s, 10m or 1h"
    if name == "max_usd":
        return "the budget is in US dollars, e.g. budget: {max_usd: 0.5}"
    if name == "max_instances":
        return "max_instances is 1 to 100000 (default 1000)"
    return None


def _pattern(path: PathKey, instance: str) -> tuple[str, str | None]:
    name = path[-1] if path else None
    if isinstance(name, str) and name in wire.PARAMS:
        kind = _TYPE_NAMES[wire.PARAMS[name].type]
        return (
            f"expected {kind}, got {instance!r}",
            f'write a plain value or a template such as "{{{{ params.{name} }}}}"',
        )
    if name == "timeout":
        return (
            f"{instance!r} is not a duration",
            "use seconds (90) or a number with a unit: 500ms, 90s, 10m, 1h, 1h30m",
        )
    if "needs" in path:
        return (f"{instance!r} is not a step id", "step ids match ^[a-z][a-z0-9_-]*$")
    if name == "foreach" or (len(path) >= 2 and path[-2] == "matrix"):
        return (
            f"expected a list or a template giving one, got {instance!r}",
            f"write a YAML list ([{instance}, ...]) or a template such as "
            '"{{ params.styles }}"',
        )
    return (f"{instance!r} does not have the expected form", None)


def _bad_name(doc: Document, parent: PathKey, name: Any, at: Any) -> Any:
    where = doc.source.key_at((*parent, name))
    p = (*parent, name)
    if parent == ("steps",):
        return at(
            where,
            p,
            f"invalid step id {name!r}",
            "step ids start with a lowercase letter, then lowercase letters, digits, _ or -",
        )
    if parent == ("params",):
        return at(
            where,
            p,
            f"invalid param name {name!r}",
            "param names start with a letter, then letters, digits or _ (usable as params.<name>)",
        )
    return at(where, p, f"invalid name {name!r}", "use letters, digits, '_', '.' or '-'")


def _wrong_type(path: PathKey, instance: Any, expected: Any) -> tuple[str, str | None]:
    kinds = [expected] if isinstance(expected, str) else list(expected)
    name = path[-1] if path else None
    if name == "needs":
        want = "a step id or a list of step ids"
    elif name == "timeout":
        want = "a number of seconds or a duration string"
    elif len(kinds) > 1 and "string" in kinds:
        # A native value or a template string (API parameters).
        main = " or ".join(_TYPE_NAMES.get(k, k) for k in kinds if k != "string")
        want = f'{main} (or a template string "{{{{ ... }}}}")'
    else:
        want = " or ".join(_TYPE_NAMES.get(k, k) for k in kinds)
    return (f"expected {want}, got {_describe(instance)}", None)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _not_in_enum(path: PathKey, instance: Any, allowed: list[Any]) -> tuple[str, str | None]:
    if path and path[-1] == "function":
        return (
            f"unknown function {instance!r}",
            _did_you_mean(str(instance), list(wire.FUNCTIONS)) or _choices(wire.FUNCTIONS),
        )
    if len(path) == 3 and path[0] == "params" and path[2] == "type":
        return (f"unknown param type {instance!r}", _choices(allowed))
    return (f"{instance!r} is not one of {_choices(allowed, plain=True)}", None)


def _choices(values: Sequence[Any], *, plain: bool = False) -> str:
    text = ", ".join(str(v) for v in values)
    return text if plain else f"one of: {text}"


def _did_you_mean(word: str, options: Sequence[str]) -> str | None:
    # A truncated name (`upscale` for `upscale_factor`) is the likeliest slip; then spelling.
    close = [o for o in options if len(word) >= 3 and o.startswith(word)]
    close = close or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None
