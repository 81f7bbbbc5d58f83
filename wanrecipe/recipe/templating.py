"""Jinja templates in recipe strings: sandboxed, strict, and native when a string is one expression.

A string without ``{{``/``{%``/``{#`` is a literal and is never rendered. A string that is
exactly one ``{{ expression }}`` evaluates to the expression's own value (``"{{ params.factor }}"``
is the integer 2, ``"{{ steps.x.image }}"`` the runner's image object); any other template
renders to a string.

The template context (see README.md, "Templates"): ``params`` (bound param values), ``steps``
(``steps.<id>.image``, ``steps.<id>.images``), ``step`` (``id``, ``function`` of the step being
rendered) and ``recipe`` (``name``, ``description``).

Plain dotted look-ups (``{{ steps.x.image }}``, ``a {{ params.style }} photo``) take a fast path
that gives the same result as Jinja without compiling: a 1,000-step recipe has thousands of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes

from .sandbox import (
    LimitedEnvironment,
    TemplateLimit,
    check_value,
    instrument_loops,
    render_limited,
)
from .sandbox import render_template as _render_whole

CONTEXT_NAMES = frozenset({"params", "steps", "step", "recipe", "item", "loop", "matrix"})
STEP_OUTPUT_ATTRS = ("image", "images")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = r"""\.[A-Za-z_][A-Za-z0-9_]*|\[\s*'[^'\\]*'\s*\]|\[\s*"[^"\\]*"\s*\]|\[\s*\d+\s*\]"""
_SIMPLE_EXPR = re.compile(rf"^\s*({_IDENT})((?:{_SEGMENT})*)\s*$")
_SEGMENTS = re.compile(_SEGMENT)
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")
#: Jinja turns every line break in template text into "\n"; the fast path does the same.
_NEWLINES = re.compile(r"\r\n|\r|\n")


class TemplateProblem(Exception):
    """A template cannot be compiled or rendered. ``line`` is 1-based inside the template."""

    def __init__(self, message: str, *, line: int = 1, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.hint = hint


class Scope:
    """A read-only namespace for templates: ``scope.name`` and ``scope['name']`` both work.

    Not a dict on purpose: with a dict, ``params.items`` would be the dict method, not the param.
    """

    __slots__ = ("_items", "_what")

    def __init__(self, what: str, items: Mapping[str, Any]) -> None:
        self._what = what
        self._items = items

    def __getattr__(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"{self._what} has no {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<{self._what}>"


def _make_env() -> LimitedEnvironment:
    return LimitedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


_ENV = _make_env()


@dataclass(frozen=True)
class Template:
    """One recipe string, analysed: what it refers to, and how to evaluate it."""

    source: str
    #: Step ids referenced as ``steps.<id>``.
    steps: frozenset[str] = frozenset()
    #: Param names referenced as ``params.<name>``.
    params: frozenset[str] = frozenset()
    #: Problems found without rendering (unknown names, bad ``steps`` use): (message, hint).
    problems: tuple[tuple[str, str | None], ...] = ()
    _evaluate: Callable[[Mapping[str, Any]], Any] | None = field(default=None, repr=False)

    @property
    def is_literal(self) -> bool:
        return self._evaluate is None

    def render(self, context: Mapping[str, Any]) -> Any:
        """The value of this string in ``context``. Raises TemplateProblem."""
        if self._evaluate is None:
            return self.source
        evaluate = self._evaluate
        try:
            return render_limited(lambda: evaluate(context))
        except TemplateProblem:
            raise
        except TemplateLimit as exc:
            raise TemplateProblem(exc.message, hint=exc.hint) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateProblem(f"refused by the template sandbox: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateProblem(f"undefined: {exc}") from None
        except jinja2.TemplateError as exc:
            raise TemplateProblem(f"template error: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
            raise TemplateProblem(f"template error: {type(exc).__name__}: {exc}") from None


def is_template(value: object) -> bool:
    return isinstance(value, str) and any(m in value for m in _MARKERS)


@lru_cache(maxsize=8192)
def compile_template(source: str) -> Template:
    """Analyse (and prepare to render) one recipe string. Raises TemplateProblem on bad syntax."""
    if not any(m in source for m in _MARKERS):
        return Template(source)
    fast = _compile_simple(source)
    return fast if fast is not None else _compile_jinja(source)


# -- fast path ---------------------------------------------------------------------------------


def _parse_simple(expr: str) -> tuple[str, tuple[str | int, ...]] | None:
    m = _SIMPLE_EXPR.match(expr)
    if not m:
        return None
    parts: list[str | int] = []
    for seg in _SEGMENTS.findall(m.group(2)):
        if seg.startswith("."):
            parts.append(seg[1:])
        else:
            inner = seg[1:-1].strip()
            parts.append(int(inner) if inner.isdigit() else inner[1:-1])
    if any(isinstance(p, str) and p.startswith("_") for p in parts):
        return None  # let the sandbox refuse it, with its own message
    return m.group(1), tuple(parts)


def _compile_simple(source: str) -> Template | None:
    if "{%" in source or "{#" in source:
        return None
    pieces: list[str | tuple[str, tuple[str | int, ...]]] = []
    pos = 0
    for m in _EXPRESSION.finditer(source):
        parsed = _parse_simple(m.group(1))
        if parsed is None:
            return None
        if m.start() > pos:
            pieces.append(_NEWLINES.sub("\n", source[pos : m.start()]))
        pieces.append(parsed)
        pos = m.end()
    rest = source[pos:]
    if "{{" in rest:
        return None
    if rest:
        pieces.append(_NEWLINES.sub("\n", rest))
    lookups = [p for p in pieces if isinstance(p, tuple)]
    if not lookups:
        return None
    steps, params, problems = _check_lookups(lookups)
    native = len(pieces) == 1 or (
        len(lookups) == 1 and all(isinstance(p, tuple) or not p.strip() for p in pieces)
    )

    def evaluate(context: Mapping[str, Any]) -> Any:
        if native:
            return _lookup(context, lookups[0])
        return "".join(p if isinstance(p, str) else _to_text(_lookup(context, p)) for p in pieces)

    return Template(source, steps, params, problems, evaluate)


def _to_text(value: Any) -> str:
    # What Jinja's {{ }} prints for a value (autoescape off).
    return str(value)


def _lookup(context: Mapping[str, Any], expr: tuple[str, tuple[str | int, ...]]) -> Any:
    root, parts = expr
    if root not in context:
        raise TemplateProblem(f"undefined: {root!r} is undefined")
    value = context[root]
    shown = root
    for part in parts:
        value = _get(value, part, shown)
        shown += f".{part}" if isinstance(part, str) else f"[{part}]"
    return value


def _get(obj: Any, part: str | int, shown: str) -> Any:
    # Jinja's order: attribute first, then item (for `.x`); item first, then attribute (`[x]`).
    if isinstance(part, str):
        try:
            value = getattr(obj, part)
        except AttributeError:
            pass
        else:
            if not _ENV.is_safe_attribute(obj, part, value):
                raise TemplateProblem(
                    f"refused by the template sandbox: access to {part!r} of {shown} is unsafe"
                )
            return value
    try:
        return obj[part]
    except (KeyError, IndexError, TypeError):
        pass
    if isinstance(part, int):
        raise TemplateProblem(f"undefined: {shown} has no item {part}")
    raise TemplateProblem(f"undefined: {shown} has no attribute {part!r}")


def _check_lookups(
    lookups: list[tuple[str, tuple[str | int, ...]]],
) -> tuple[frozenset[str], frozenset[str], tuple[tuple[str, str | None], ...]]:
    steps: set[str] = set()
    params: set[str] = set()
    problems: list[tuple[str, str | None]] = []
    for root, parts in lookups:
        if root not in CONTEXT_NAMES:
            problems.append(_undefined_name(root))
        elif root == "steps":
            if not parts or not isinstance(parts[0], str):
                problems.append(_dynamic_steps())
                continue
            steps.add(parts[0])
            if len(parts) > 1 and parts[1] not in STEP_OUTPUT_ATTRS:
                problems.append(_bad_output_attr(parts[0], parts[1]))
        elif root == "params" and parts and isinstance(parts[0], str):
            params.add(parts[0])
    return frozenset(steps), frozenset(params), tuple(problems)


def _undefined_name(name: str) -> tuple[str, str | None]:
    return (
        f"undefined name {name!r} in template",
        "templates can use params, steps, step and recipe (and item, loop, matrix in a "
        "foreach: or matrix: step)",
    )


def _dynamic_steps() -> tuple[str, str | None]:
    return (
        "'steps' must be followed by a step id",
        "write steps.<id>.image (or steps['<id>'].image); the id must be written out so the "
        "dependency is known before the run",
    )


def _bad_output_attr(step_id: str, attr: object) -> tuple[str, str | None]:
    return (
        f"steps.{step_id} has no {attr!r}",
        f"use steps.{step_id}.image (the first output) or steps.{step_id}.images (all of them)",
    )


# -- Jinja -------------------------------------------------------------------------------------


def _compile_jinja(source: str) -> Template:
    try:
        return _compile_jinja_unchecked(source)
    except jinja2.TemplateAssertionError as exc:
        # Found while compiling, e.g. an unknown filter or test.
        message = exc.message or str(exc)
        raise TemplateProblem(
            f"template error: {message[:1].lower()}{message[1:].rstrip('.')}",
            line=exc.lineno or 1,
            hint=_assertion_hint(message),
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"template syntax error: {exc.message}", line=exc.lineno or 1
        ) from None
    except (RecursionError, MemoryError, SyntaxError):
        raise TemplateProblem(
            "template nested too deeply to compile",
            hint="split the expression; templates fill in recipe values",
        ) from None


def _assertion_hint(message: str) -> str | None:
    if "filter" in message:
        return "recipes have Jinja's built-in filters only: " + ", ".join(sorted(_ENV.filters))
    if "test" in message:
        return "recipes have Jinja's built-in tests only: " + ", ".join(sorted(_ENV.tests))
    return None


def _compile_jinja_unchecked(source: str) -> Template:
    ast = _ENV.parse(source)
    steps, params, problems = _analyse(ast)
    native_expr = _single_expression(ast, source)
    if native_expr is not None:
        expression = _ENV.compile_expression(native_expr, undefined_to_none=False)

        def evaluate(context: Mapping[str, Any]) -> Any:
            value = expression(**context)
            if isinstance(value, jinja2.Undefined):
                str(value)  # StrictUndefined raises UndefinedError with Jinja's own message
            # Within limits, and no Undefined hiding in a list (it would print "Undefined").
            check_value(value)
            return value

        return Template(source, steps, params, problems, evaluate)
    compiled = _ENV.from_string(instrument_loops(ast))
    return Template(
        source, steps, params, problems, lambda context: _render_whole(compiled, context)
    )


def _single_expression(ast: nodes.Template, source: str) -> str | None:
    body = ast.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    exprs = [
        n for n in body[0].nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())
    ]
    if len(exprs) != 1 or isinstance(exprs[0], nodes.TemplateData):
        return None
    stripped = source.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return None
    inner = stripped[2:-2]
    if inner.startswith("-"):
        inner = inner[1:]
    if inner.endswith("-"):
        inner = inner[:-1]
    return inner


def _analyse(
    ast: nodes.Template,
) -> tuple[frozenset[str], frozenset[str], tuple[tuple[str, str | None], ...]]:
    problems: list[tuple[str, str | None]] = []
    for name in sorted(meta.find_undeclared_variables(ast) - CONTEXT_NAMES):
        problems.append(_undefined_name(name))
    steps: set[str] = set()
    params: set[str] = set()
    step_bases: set[int] = set()
    seen_steps_names = 0
    for name_node in ast.find_all(nodes.Name):
        if name_node.name == "steps" and name_node.ctx == "load":
            seen_steps_names += 1
    recognised = 0
    access: Any  # Getattr or Getitem; jinja types find_all() loosely
    for access in ast.find_all((nodes.Getattr, nodes.Getitem)):
        key = _static_key(access)
        base: nodes.Node = access.node
        if isinstance(base, nodes.Name) and base.ctx == "load":
            if base.name == "steps" and key is not None:
                steps.add(key)
                step_bases.add(id(access))
                recognised += 1
            elif base.name == "params" and key is not None:
                params.add(key)
    for access in ast.find_all((nodes.Getattr, nodes.Getitem)):
        base = access.node
        if id(base) in step_bases:
            key = _static_key(access)
            step_id = _static_key(base)
            if key is not None and key not in STEP_OUTPUT_ATTRS:
                problems.append(_bad_output_attr(str(step_id), key))
    if seen_steps_names > recognised:
        problems.append(_dynamic_steps())
    return frozenset(steps), frozenset(params), tuple(problems)


def _static_key(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        value = node.arg.value
        return value if isinstance(value, str) else None
    return None
