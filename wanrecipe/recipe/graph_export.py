"""The step graph as Mermaid or Graphviz dot text, one node per step as written.

A ``foreach:``/``matrix:`` step is drawn once with its multiplicity (``styles ×6``), a skipped
step dashed and marked ``skipped``. Node ids are positional (``s1``, ``s2``...) because step ids
may contain ``-`` and Mermaid has reserved words (``end``); labels carry the real id and
function. Edges implied only by ``needs`` are dashed; ``foreach`` over a step's images is
labelled.
"""

from __future__ import annotations

import json

from .model import Recipe, Step

EdgeKind = str  # "ref" | "needs" | "foreach"


def _edges(recipe: Recipe) -> list[tuple[str, str, EdgeKind]]:
    """(upstream, downstream, kind) between steps as written, in declared order."""
    out: list[tuple[str, str, EdgeKind]] = []
    order = {s.id: i for i, s in enumerate(recipe.steps_as_written)}
    for step in recipe.steps_as_written:
        ups: dict[str, EdgeKind] = {}
        for need in step.needs:
            ups[need] = "needs"
        for ref in step.references:
            ups[ref] = "ref"
        if step.foreach_source is not None:
            ups[step.foreach_source] = "foreach"
        for up in sorted(ups, key=lambda u: order.get(u, len(order))):
            if up in order:
                out.append((up, step.id, ups[up]))
    return out


def _label(recipe: Recipe, step: Step) -> tuple[str, str]:
    """(``styles ×6``, ``stylization_all``) and the same with ``skipped``."""
    name = step.id
    if step.foreach is not None or step.matrix is not None:
        count = len(recipe.instances(step.id))
        dropped = sum(
            1 for k in recipe.skipped.values() if k.group == step.id and k.fanout is not None
        )
        name += f" ×{count}" + (f" of {count + dropped}" if dropped else "")
    return name, step.function


def to_mermaid(recipe: Recipe) -> str:
    ids = {s.id: f"s{i + 1}" for i, s in enumerate(recipe.steps_as_written)}
    lines = ["flowchart LR"]
    skipped: list[str] = []
    for step in recipe.steps_as_written:
        name, function = _label(recipe, step)
        extra = ""
        if recipe.is_skipped(step.id):
            extra = "<br/>skipped"
            skipped.append(ids[step.id])
        label = f"{name}<br/><i>{function}</i>{extra}".replace('"', "#quot;")
        lines.append(f'    {ids[step.id]}["{label}"]')
    for up, down, kind in _edges(recipe):
        arrow = {"needs": "-.->", "foreach": "-->|foreach|"}.get(kind, "-->")
        lines.append(f"    {ids[up]} {arrow} {ids[down]}")
    if skipped:
        lines.append("    classDef skipped stroke-dasharray: 5 5,color:#888")
        lines.append(f"    class {','.join(skipped)} skipped")
    return "\n".join(lines) + "\n"


def to_dot(recipe: Recipe) -> str:
    lines = [
        f"digraph {json.dumps(recipe.name, ensure_ascii=False)} {{",
        "    rankdir=LR;",
        "    node [shape=box, fontname=Helvetica];",
    ]
    for step in recipe.steps_as_written:
        name, function = _label(recipe, step)
        text = name + "\n" + function
        style = ""
        if recipe.is_skipped(step.id):
            text += "\nskipped"
            style = ", style=dashed, fontcolor=gray"
        attrs = f"label={json.dumps(text, ensure_ascii=False)}{style}"
        lines.append(f"    {json.dumps(step.id)} [{attrs}];")
    for up, down, kind in _edges(recipe):
        style = {"needs": " [style=dashed]", "foreach": ' [label="foreach"]'}.get(kind, "")
        lines.append(f"    {json.dumps(up)} -> {json.dumps(down)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
