from __future__ import annotations

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2.sandbox import SandboxedEnvironment

from wanrecipe.recipe.templating import Scope, TemplateProblem, compile_template


class Ref:
    """Stands for the runner's image object: must come back untouched."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"ref:{self.name}"


def context() -> dict[str, object]:
    a, b = Ref("a0"), Ref("a1")
    return {
        "params": Scope("params", {"factor": 2, "style": "ink", "items": "not the method"}),
        "steps": Scope(
            "steps",
            {
                "a": Scope("steps.a", {"image": a, "images": [a, b]}),
                "my-step": Scope("steps.my-step", {"image": b, "images": [b]}),
            },
        ),
        "step": Scope("step", {"id": "x", "function": "expand"}),
        "recipe": Scope("recipe", {"name": "r", "description": ""}),
    }


def render(source: str) -> object:
    return compile_template(source).render(context())


def test_one_expression_keeps_its_native_type():
    assert render("{{ params.factor }}") == 2
    assert render("  {{ params.factor }} ") == 2
    assert render("{{ params.factor * 2 }}") == 4
    ctx = context()
    image = compile_template("{{ steps.a.image }}").render(ctx)
    assert image is ctx["steps"]["a"]["image"]  # type: ignore[index]
    images = compile_template("{{ steps.a.images }}").render(ctx)
    assert images == ctx["steps"]["a"]["images"]  # type: ignore[index]


def test_mixed_text_renders_to_a_string():
    assert render("factor {{ params.factor }}") == "factor 2"
    assert render("{{ params.style }}-{{ params.factor }}") == "ink-2"
    assert render("{{ steps.a.image }} and {{ steps['my-step'].image }}") == "ref:a0 and ref:a1"
    assert render("{% if params.factor > 1 %}big{% endif %}") == "big"


def test_params_named_like_dict_methods_are_still_params():
    assert render("{{ params.items }}") == "not the method"


def test_literals_are_not_rendered():
    t = compile_template("a plain {brace} string")
    assert t.is_literal and render("a plain {brace} string") == "a plain {brace} string"


def test_references_are_extracted():
    t = compile_template("{{ steps.a.image }} {{ steps['my-step'].images[0] }} {{ params.style }}")
    assert t.steps == {"a", "my-step"} and t.params == {"style"}
    t = compile_template("{% for i in steps.a.images %}{{ i }}{{ params.factor }}{% endfor %}")
    assert t.steps == {"a"} and t.params == {"factor"} and not t.problems


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ parms.factor }}", "undefined name 'parms' in template"),
        ("{{ steps.a.url }}", "steps.a has no 'url'"),
        ("{% for s in steps %}{{ s }}{% endfor %}", "'steps' must be followed by a step id"),
        ("{{ steps[params.style].image }}", "'steps' must be followed by a step id"),
    ],
)
def test_static_problems(source: str, message: str):
    assert message in [m for m, _ in compile_template(source).problems]


def test_syntax_errors_carry_the_template_line():
    with pytest.raises(TemplateProblem) as info:
        compile_template("line one\n{{ params.factor + }}")
    assert info.value.line == 2 and "syntax error" in info.value.message


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ params.__class__ }}",
        "{{ steps._items }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_internals(source: str):
    template = compile_template(source)
    with pytest.raises(TemplateProblem) as info:
        template.render(context())
    assert "sandbox" in info.value.message or "undefined" in info.value.message


def test_strict_undefined_at_render_time():
    with pytest.raises(TemplateProblem, match="undefined"):
        render("{{ steps.a.images[5] }}")
    with pytest.raises(TemplateProblem, match="undefined"):
        render("x {{ params.nope }}")
    with pytest.raises(TemplateProblem, match="undefined"):
        render("{{ params.nope | upper }}")


def test_runtime_errors_become_template_problems():
    with pytest.raises(TemplateProblem, match="ZeroDivisionError"):
        render("{{ params.factor / 0 }}")


_plain = st.text(alphabet=st.characters(blacklist_characters="{}%#"), max_size=40)


@given(_plain)
def test_plain_strings_render_unchanged(text: str):
    assert render(text) == text


_jinja = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_lookups = st.sampled_from(
    [
        "params.factor",
        "params.style",
        "steps.a.image",
        "steps['my-step'].image",
        "step.id",
        "recipe.name",
        "steps.a.images[1]",
        "params['style']",
    ]
)


@given(st.lists(st.tuples(_plain, _lookups), min_size=1, max_size=4), _plain)
def test_fast_path_matches_jinja(parts: list[tuple[str, str]], tail: str):
    source = "".join(f"{text}{{{{ {expr} }}}}" for text, expr in parts) + tail
    expected = _jinja.from_string(source).render(context())
    got = render(source)
    if len(parts) == 1 and not parts[0][0].strip() and not tail.strip():
        assert str(got) == expected.strip()  # native: the value, surrounding space dropped
    else:
        assert got == expected
