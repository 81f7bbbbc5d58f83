"""The step graph as inline SVG, laid out in Python from the graph's levels.

Levels are columns (data flows left to right), each level's steps stacked in declared order;
edges are curves from a step's right side to its dependant's left side. Every node links to its
step's section (``#step-<id>``). The markup is built with ``markupsafe`` so ids are escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

NODE_W = 168
NODE_H = 40
GAP_X = 64
GAP_Y = 14
PAD = 10
_LABEL_CHARS = 20


def dag_svg(
    levels: Sequence[Sequence[str]],
    edges: Sequence[tuple[str, str]],
    states: Mapping[str, str],
    functions: Mapping[str, str],
    anchors: Mapping[str, str],
) -> Markup:
    """The SVG element. ``anchors`` maps a step id to its section's element id."""
    pos: dict[str, tuple[int, int]] = {}
    tallest = max((len(level) for level in levels), default=0)
    height = PAD * 2 + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
    for col, level in enumerate(levels):
        x = PAD + col * (NODE_W + GAP_X)
        column_h = len(level) * NODE_H + max(len(level) - 1, 0) * GAP_Y
        y0 = (height - column_h) // 2
        for row, sid in enumerate(level):
            pos[sid] = (x, y0 + row * (NODE_H + GAP_Y))
    width = PAD * 2 + len(levels) * NODE_W + max(len(levels) - 1, 0) * GAP_X
    parts: list[str] = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="step graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
        'class="dag-arrow"/></marker></defs>',
    ]
    for src, dst in edges:
        if src not in pos or dst not in pos:
            continue
        x1, y1 = pos[src][0] + NODE_W, pos[src][1] + NODE_H // 2
        x2, y2 = pos[dst][0], pos[dst][1] + NODE_H // 2
        mid = (x1 + x2) // 2
        parts.append(
            f'<path class="dag-edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" '
            'marker-end="url(#arrow)"/>'
        )
    for sid, (x, y) in pos.items():
        state = states.get(sid, "waiting")
        label = sid if len(sid) <= _LABEL_CHARS else sid[: _LABEL_CHARS - 1] + "…"
        func = functions.get(sid, "")
        parts.append(
            f'<a href="#{escape(anchors.get(sid, sid))}" class="dag-node state-{escape(state)}">'
            f"<title>{escape(sid)}: {escape(func)} ({escape(state)})</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 17}" class="dag-id">{escape(label)}</text>'
            f'<text x="{x + 10}" y="{y + 32}" class="dag-fn">{escape(func)} · '
            f"{escape(state)}</text></a>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
