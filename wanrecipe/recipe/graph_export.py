"""The step graph as Mermaid or Graphviz dot text.

Node ids are positional (``s1``, ``s2``...) because step ids may contain ``-`` and Mermaid has
reserved words (``end``); labels carry the real id and function. Edges implied only by
``needs`` are dashed.
"""

from __future__ import annotations

import json

from .model import Recipe


def _edges(recipe: Recipe) -> list[tuple[str, str, bool]]:
    """(upstream, downstream, needs-only)."""
    return [(up, down, up not in recipe.step(down).references) for up, down in recipe.graph.edges()]


def to_mermaid(recipe: Recipe) -> str:
    ids = {sid: f"s{i + 1}" for i, sid in enumerate(recipe.step_ids)}
    lines = ["flowchart LR"]
    for step in recipe.steps:
        sid = step.id
        label = f"{sid}<br/><i>{step.function}</i>".replace('"', "#quot;")
        lines.append(f'    {ids[sid]}["{label}"]')
    for up, down, needs_only in _edges(recipe):
        arrow = "-.->" if needs_only else "-->"
        lines.append(f"    {ids[up]} {arrow} {ids[down]}")
    return "\n".join(lines) + "\n"


def to_dot(recipe: Recipe) -> str:
    lines = [
        f"digraph {json.dumps(recipe.name, ensure_ascii=False)} {{",
        "    rankdir=LR;",
        "    node [shape=box, fontname=Helvetica];",
    ]
    for step in recipe.steps:
        sid = step.id
        lines.append(f"    {json.dumps(sid)} [label={json.dumps(sid + chr(10) + step.function)}];")
    for up, down, needs_only in _edges(recipe):
        style = " [style=dashed]" if needs_only else ""
        lines.append(f"    {json.dumps(up)} -> {json.dumps(down)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
