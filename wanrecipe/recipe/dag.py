"""The step graph: dependencies, topological levels, cycles named by their path.

Edges point the way data flows: ``a -> b`` means b uses a's output (or ``needs: [a]``), so a
runs first. Everything is iterative (no recursion limit on long chains) and keeps the declared
order wherever the graph leaves a choice, so output is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class CycleError(ValueError):
    """The graph has a cycle; ``path`` names it, first node repeated last (``a -> b -> a``)."""

    def __init__(self, path: Sequence[str]) -> None:
        self.path = tuple(path)
        super().__init__("cycle: " + " -> ".join(self.path))


class Graph:
    """Steps and their dependencies, in declared order."""

    def __init__(self, nodes: Sequence[str], deps: Mapping[str, Iterable[str]]) -> None:
        self._nodes = tuple(nodes)
        order = {n: i for i, n in enumerate(self._nodes)}
        unknown = {d for n in self._nodes for d in deps.get(n, ()) if d not in order}
        if unknown:
            raise ValueError(f"dependencies on unknown nodes: {sorted(unknown)}")
        self._deps: dict[str, tuple[str, ...]] = {
            n: tuple(sorted(set(deps.get(n, ())), key=order.__getitem__)) for n in self._nodes
        }
        dependents: dict[str, list[str]] = {n: [] for n in self._nodes}
        for n in self._nodes:
            for d in self._deps[n]:
                dependents[d].append(n)
        self._dependents = {n: tuple(v) for n, v in dependents.items()}
        self._levels: tuple[tuple[str, ...], ...] | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes

    def deps(self, node: str) -> tuple[str, ...]:
        """What ``node`` waits for."""
        return self._deps[node]

    def dependents(self, node: str) -> tuple[str, ...]:
        """What waits for ``node``."""
        return self._dependents[node]

    def edges(self) -> list[tuple[str, str]]:
        """(upstream, downstream) pairs, in declared order."""
        return [(d, n) for n in self._nodes for d in self._deps[n]]

    def find_cycle(self) -> tuple[str, ...] | None:
        """A cycle as a path ``(a, b, ..., a)`` along edges, or None. The first one found from
        the earliest declared node."""
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self._nodes, white)
        for root in self._nodes:
            if colour[root] != white:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            colour[root] = grey
            while stack:
                node, i = stack[-1]
                children = self._dependents[node]
                if i == len(children):
                    colour[node] = black
                    stack.pop()
                    continue
                stack[-1] = (node, i + 1)
                child = children[i]
                if colour[child] == grey:
                    path = [n for n, _ in stack]
                    return (*path[path.index(child) :], child)
                if colour[child] == white:
                    colour[child] = grey
                    stack.append((child, 0))
        return None

    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Steps grouped so each depends only on earlier levels; a step sits at the first level
        it can. Raises CycleError."""
        if self._levels is not None:
            return self._levels
        level: dict[str, int] = {}
        waiting = {n: len(self._deps[n]) for n in self._nodes}
        ready = [n for n in self._nodes if waiting[n] == 0]
        for n in ready:
            level[n] = 0
        i = 0
        while i < len(ready):
            node = ready[i]
            i += 1
            for child in self._dependents[node]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    level[child] = 1 + max(level[d] for d in self._deps[child])
                    ready.append(child)
        if len(ready) != len(self._nodes):
            cycle = self.find_cycle()
            raise CycleError(cycle or ())
        grouped: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for n in self._nodes:
            grouped[level[n]].append(n)
        self._levels = tuple(tuple(g) for g in grouped)
        return self._levels

    def topological_order(self) -> tuple[str, ...]:
        return tuple(n for group in self.levels() for n in group)

    def critical_path_lengths(self) -> dict[str, int]:
        """For each node, the number of nodes on the longest path from it to a sink (itself
        included): the priority of list scheduling."""
        out: dict[str, int] = {}
        for node in reversed(self.topological_order()):
            out[node] = 1 + max((out[c] for c in self._dependents[node]), default=0)
        return out
