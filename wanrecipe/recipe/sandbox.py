"""The Jinja sandbox recipes render in, with limits on work and size.

Jinja's ``SandboxedEnvironment`` stops templates from reaching Python internals, but not from
asking for ``'a' * 10**9``, ``10**10**10`` or three nested ``range(100000)`` loops. A recipe is
a file people download, so every render here is bounded:

- strings and the text of any value printed, joined or concatenated: ``MAX_STRING`` characters;
- lists: ``MAX_ITEMS`` items, ``range()`` included;
- integers: ``MAX_INT_BITS`` bits (``**`` and ``*`` are checked before they compute);
- calls (macros, ``loop()``): ``MAX_DEPTH`` deep;
- time: ``RENDER_SECONDS`` per render, checked at every loop iteration, call, operator and
  printed piece (no thread: the check runs inside the render).

Nothing runs at compile time: constant folding is off (``10**10**10`` is not computed while
the template is compiled) and ``finalize`` takes the context, so Jinja folds no output.
Sizes are checked *before* the work that would blow up, so a refused template costs
microseconds and no memory.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum, pass_context

MAX_STRING = 1_000_000
MAX_ITEMS = 100_000
MAX_INT_BITS = 16_384
MAX_DEPTH = 40
RENDER_SECONDS = 0.5
#: Width-like arguments of filters (``center``, ``indent``, ``batch``, ...).
MAX_FILTER_WIDTH = 10_000
MAX_LIPSUM_PARAGRAPHS = 100

_ITERATE = "__wanrecipe_iterate__"
_LIMIT_HINT = "templates fill in recipe values; move heavy computation out of the recipe"
#: A width or precision of 7 digits or more in a format spec (``{:>1000000000}``, ``%0999999d``).
_BIG_WIDTH = re.compile(r"\d{7,}")
_SIZED_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})


class TemplateLimit(Exception):
    """A render asked for more than the sandbox allows."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = f"template limit: {message}"
        self.hint = _LIMIT_HINT


class _Budget:
    __slots__ = ("deadline", "depth")

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.depth = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimit(
                f"rendering took more than {RENDER_SECONDS:g} s (loops nested too deep, or "
                "a macro that calls itself too often)"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "wanrecipe_template_budget", default=None
)


def _tick() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:
        # Outside render_limited (a template called by hand): sizes are still checked, but
        # a deadline stored here would outlive the render and fail the next one.
        return _Budget(RENDER_SECONDS)
    budget.tick()
    return budget


def render_limited(evaluate: Callable[[], Any]) -> Any:
    """Run one render under a fresh budget."""
    token = _BUDGET.set(_Budget(RENDER_SECONDS))
    try:
        return evaluate()
    except RecursionError:
        raise TemplateLimit("calls nested too deep (a macro that calls itself?)") from None
    except MemoryError:
        raise TemplateLimit("the template needs too much memory") from None
    finally:
        _BUDGET.reset(token)


# -- sizes --------------------------------------------------------------------------------------


def text_size(value: Any, limit: int = MAX_STRING) -> int:
    """About how many characters ``str(value)`` has, without building it; stops counting past
    ``limit``. Containers count their items (as ``repr`` shows them)."""
    total = 0
    items = 0
    stack: list[Any] = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            total += len(current) + 2
        elif isinstance(current, bool) or current is None:
            total += 5
        elif isinstance(current, int):
            total += current.bit_length() // 3 + 2
        elif isinstance(current, float):
            total += 24
        elif isinstance(current, list | tuple | set | frozenset):
            items += len(current)
            total += 2 + 2 * len(current)
            if items > MAX_ITEMS:
                return max(total, limit + 1)
            stack.extend(current)
        elif isinstance(current, dict):
            items += len(current)
            total += 2 + 4 * len(current)
            if items > MAX_ITEMS:
                return max(total, limit + 1)
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, jinja2.Undefined):
            # Inside a list, printing shows "Undefined" instead of raising: raise here.
            current._fail_with_undefined_error()
        else:
            total += 256  # our own objects (image references, scopes) print short
        if total > limit:
            return total
        if items and items % 4096 == 0:
            _tick()
    return total


def _check_text(value: Any, what: str = "a value") -> None:
    if text_size(value) > MAX_STRING:
        raise TemplateLimit(f"{what} of more than {MAX_STRING:,} characters")


def check_value(value: Any) -> None:
    """A template's native value: within the size limits, no Undefined inside."""
    _check_text(value, "a value")


def _check_result(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise TemplateLimit(f"a string of more than {MAX_STRING:,} characters")
    elif isinstance(value, list | tuple | dict | set | frozenset):
        if len(value) > MAX_ITEMS:
            raise TemplateLimit(f"a list of more than {MAX_ITEMS:,} items")
    elif (
        isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS
    ):
        raise TemplateLimit(f"an integer of more than {MAX_INT_BITS:,} bits")
    return value


def _check_format_string(text: str) -> None:
    if _BIG_WIDTH.search(text) or ("*" in text and "%" in text):
        raise TemplateLimit("a format width of a million characters or more")


def _check_width(width: object, what: str, limit: int = MAX_STRING) -> None:
    if isinstance(width, int) and not isinstance(width, bool) and abs(width) > limit:
        raise TemplateLimit(f"{what} of {width:,} (at most {limit:,})")


# -- operators ----------------------------------------------------------------------------------


def _check_mul(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"an integer of more than {MAX_INT_BITS:,} bits")
        return
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int):
            if count <= 0:
                return
            if isinstance(seq, list | tuple) and len(seq) * count > MAX_ITEMS:
                raise TemplateLimit(f"a list of more than {MAX_ITEMS:,} items")
            if text_size(seq) * count > MAX_STRING + 2 * count:
                raise TemplateLimit(f"a string of more than {MAX_STRING:,} characters")


def _check_pow(left: Any, right: Any) -> None:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and abs(left) > 1
        and (right > MAX_INT_BITS or right * left.bit_length() > MAX_INT_BITS)
    ):
        raise TemplateLimit(f"an exponent that large ({left} ** {right})")


def _check_add(left: Any, right: Any) -> None:
    if isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > MAX_STRING:
            raise TemplateLimit(f"a string of more than {MAX_STRING:,} characters")
    elif (
        isinstance(left, list | tuple)
        and isinstance(right, list | tuple)
        and len(left) + len(right) > MAX_ITEMS
    ):
        raise TemplateLimit(f"a list of more than {MAX_ITEMS:,} items")


def _check_mod(left: Any, right: Any) -> None:
    if isinstance(left, str):
        _check_format_string(left)
        _check_text(right, "a format argument")


_BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "*": _check_mul,
    "**": _check_pow,
    "+": _check_add,
    "%": _check_mod,
}


# -- calls --------------------------------------------------------------------------------------


def _check_str_method(
    text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    values = [*args, *kwargs.values()]
    for value in values:
        _check_width(value, f"{name}() argument")
    if name in ("format", "format_map"):
        _check_format_string(text)
        for value in values:
            _check_text(value, "a format argument")
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str):
            count = text.count(old) if old else len(text) + 1
            if len(text) + count * max(0, len(new) - len(old)) > MAX_STRING:
                raise TemplateLimit(f"a string of more than {MAX_STRING:,} characters")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and len(text) + text.count("\t") * size > MAX_STRING:
            raise TemplateLimit(f"a string of more than {MAX_STRING:,} characters")
    elif name == "join" and args:
        _check_text(args[0], "a joined text")


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    # The sandbox hands out str.format wrapped (its own safe formatter): look through it.
    owner = getattr(obj, "__self__", None)
    if owner is None:
        owner = getattr(getattr(obj, "__wrapped__", None), "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        _check_str_method(owner, name, args, kwargs)


def safe_range(*args: int) -> Iterator[int]:
    """``range()`` for templates: at most MAX_ITEMS items, each one a tick of the clock."""
    values = range(*args)
    if len(values) > MAX_ITEMS:
        raise TemplateLimit(f"range() of {len(values):,} items (at most {MAX_ITEMS:,})")
    return _iterate(values)


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's lorem ipsum, bounded."""
    _check_width(n, "lipsum() paragraphs", MAX_LIPSUM_PARAGRAPHS)
    _check_width(min, "lipsum() words", 1000)
    _check_width(max, "lipsum() words", 1000)
    return generate_lorem_ipsum(n, html, min, max)


def _iterate(values: Iterable[Any]) -> Iterator[Any]:
    budget = _tick()
    for item in values:
        budget.tick()
        yield item


def _wrap_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def limited(*args: Any, **kwargs: Any) -> Any:
        _tick()
        value = args[skip] if len(args) > skip else None
        extra = (*args[skip + 1 :], *kwargs.values())
        _check_text(value, f"the input of filter {name!r}")
        if name in _SIZED_FILTERS:
            for arg in extra:
                _check_width(arg, f"filter {name!r} argument", MAX_FILTER_WIDTH)
        if name in ("replace", "format") and isinstance(value, str):
            if name == "format":
                _check_format_string(value)
            else:
                _check_str_method(value, "replace", tuple(extra[:2]), {})
        for arg in extra:
            _check_text(arg, f"an argument of filter {name!r}")
        if name == "indent" and isinstance(value, str):
            width = extra[0] if extra else 4
            lines = value.count("\n") + 1
            if isinstance(width, int) and len(value) + lines * width > MAX_STRING:
                raise TemplateLimit(f"a string of more than {MAX_STRING:,} characters")
        return _check_result(func(*args, **kwargs))

    return limited


@pass_context
def _finalize(context: Any, value: Any) -> Any:
    _tick()
    _check_text(value, "a printed value")
    return value


def _checked_concat(parts: Iterable[str]) -> str:
    out: list[str] = []
    total = 0
    for part in parts:
        total += len(part)
        if total > MAX_STRING:
            raise TemplateLimit(f"output of more than {MAX_STRING:,} characters")
        out.append(part)
    return "".join(out)


def _checked_join(parts: tuple[Any, ...]) -> str:
    _tick()
    total = 0
    for part in parts:
        total += text_size(part) if not isinstance(part, str) else len(part)
        if total > MAX_STRING:
            raise TemplateLimit(f"a string of more than {MAX_STRING:,} characters")
    return "".join(map(str, parts))


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b ~ c`: through the environment's checked join (Jinja's str_join is unchecked).
        self.write("environment.checked_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Const(self, node: nodes.Const, frame: Frame) -> None:
        # Jinja writes floats with str(): `nan` and `inf` are not Python names.
        value = node.as_const(frame.eval_ctx)
        if isinstance(value, float) and not math.isfinite(value):
            self.write(f"float({str(value)!r})")
        else:
            super().visit_Const(node, frame)


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The recipes' environment: sandboxed, immutable builtins, bounded work and size."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset(_BINOP_CHECKS) | frozenset({"-", "/", "//"})

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, finalize=_finalize, **options)
        self.concat = _checked_concat  # type: ignore[method-assign]
        self.checked_join = _checked_join
        self.globals["range"] = safe_range
        self.globals["lipsum"] = lipsum
        self.globals[_ITERATE] = _iterate
        self.filters = {name: _wrap_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        _tick()
        check = _BINOP_CHECKS.get(operator_)
        if check is not None:
            check(left, right)
        return _check_result(super().call_binop(context, operator_, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _tick()
        _check_call(__obj, args, kwargs)
        budget.depth += 1
        if budget.depth > MAX_DEPTH:
            raise TemplateLimit(f"calls nested more than {MAX_DEPTH} deep (a recursive macro?)")
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return _check_result(result)


def instrument_loops(ast: nodes.Template) -> nodes.Template:
    """Make every ``{% for %}`` iterate through the clock (an empty loop body has no other
    place to stop it)."""
    for loop in ast.find_all(nodes.For):
        loop.iter = nodes.Call(
            nodes.Name(_ITERATE, "load", lineno=loop.lineno),
            [loop.iter],
            [],
            None,
            None,
            lineno=loop.lineno,
        )
    return ast


def render_template(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render a whole template, checking the size of what it produces as it goes."""
    budget = _tick()
    out: list[str] = []
    total = 0
    for piece in template.generate(context):
        total += len(piece)
        if total > MAX_STRING:
            raise TemplateLimit(f"output of more than {MAX_STRING:,} characters")
        budget.tick()
        out.append(piece)
    return "".join(out)


__all__ = [
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_STRING",
    "RENDER_SECONDS",
    "LimitedEnvironment",
    "TemplateLimit",
    "check_value",
    "instrument_loops",
    "render_limited",
    "render_template",
    "text_size",
]
