"""The limited sandbox refuses what is too big or too slow, and still renders what recipes
write every day."""

from __future__ import annotations

import pytest

from wanrecipe.recipe.sandbox import MAX_STRING, text_size
from wanrecipe.recipe.templating import Scope, TemplateProblem, compile_template

CONTEXT = {
    "params": Scope("params", {"style": "oil", "n": 3, "names": ["a", "b", "c"]}),
    "steps": Scope("steps", {}),
    "recipe": Scope("recipe", {"name": "r", "description": ""}),
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 2 ** 10 }}", 1024),
        ('{{ "ab" * 3 }}', "ababab"),
        ('{{ "%s-%02d" % ("x", 3) }}', "x-03"),
        ('{{ "{}+{}".format(1, 2) }}', "1+2"),
        ('{{ range(5) | join(",") }}', "0,1,2,3,4"),
        ('{{ "a" | center(5) }}', "  a  "),
        ("{{ params.names | map('upper') | join }}", "ABC"),
        ("{% for n in params.names %}{{ loop.index }}{{ n }}{% endfor %}", "1a2b3c"),
        ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(params.style) }}", "<oil>"),
        (
            "a {{ params.style ~ ' painting' }} of {{ params.n * 2 }} cats",
            "a oil painting of 6 cats",
        ),
        ("{{ lipsum(1, false, 5, 6) | wordcount > 0 }}", True),
        ("{{ [1, 2] + [3] }}", [1, 2, 3]),
        ("{{ 1e999 > 1 }}", True),
        ("{{ (params.n / 2) | round }}", 2.0),
        (
            "{% set ns = namespace(t=0) %}{% for i in range(4) %}{% set ns.t = ns.t + i %}"
            "{% endfor %}{{ ns.t }}",
            "6",
        ),
    ],
)
def test_everyday_templates_still_render(template: str, expected: object):
    assert compile_template(template).render(CONTEXT) == expected


def test_the_limits_are_generous_for_real_prompts():
    long = "x" * 5000
    text = compile_template("{{ params.style }} " + long).render(CONTEXT)
    assert text.endswith(long)
    assert compile_template('{{ "a" * 100000 }}').render(CONTEXT) == "a" * 100000


def test_text_size_counts_without_building():
    huge = ["x" * 1000] * 50_000  # 50 MB if printed; counted without printing
    assert text_size(huge) > MAX_STRING
    assert text_size("abc") == 5


@pytest.mark.parametrize(
    "template",
    [
        '{{ "a" * 10**9 }}',
        "{{ 10 ** 100000 }}",
        '{% set x = "a" * 900000 %}{{ x ~ x }}',
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        '{{ ["x" * 1000] * 5000 }}',
        '{{ "%s" % (["x" * 1000] * 5000) }}',
        '{{ "{}".format(["x" * 1000] * 5000) }}',
        '{{ (["x" * 1000] * 5000) | string }}',
    ],
)
def test_limits_are_errors_not_hangs(template: str):
    with pytest.raises(TemplateProblem) as info:
        compile_template(template).render(CONTEXT)
    assert info.value.message.startswith("template limit: ")
    assert info.value.hint


def test_bombs_cost_little_memory():
    import tracemalloc

    from wanrecipe.errors import RecipeError
    from wanrecipe.recipe.loader import load_text

    from .corpus import BOMB_HEAD, LAUGHS

    bombs = [
        lambda: load_text(BOMB_HEAD + LAUGHS + "steps: {}\n", "r.yaml"),
        lambda: compile_template('{{ "a" * 10**9 }}').render(CONTEXT),
        lambda: compile_template('{% set a = "a" * 10**6 %}{{ a ~ a ~ a ~ a }}').render(CONTEXT),
        lambda: compile_template("{{ (range(100000) | list) * 100000 }}").render(CONTEXT),
    ]
    for bomb in bombs:
        tracemalloc.start()
        try:
            with pytest.raises((RecipeError, TemplateProblem)):
                bomb()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 40 * 1024 * 1024, peak
