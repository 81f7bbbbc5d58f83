from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanrecipe.recipe.dag import CycleError, Graph


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, set[str]]]:
    """A random DAG: node i may depend only on nodes before it (in a shuffled naming)."""
    size = draw(st.integers(min_value=1, max_value=25))
    names = draw(st.permutations([f"n{i}" for i in range(size)]))
    deps: dict[str, set[str]] = {}
    for i, name in enumerate(names):
        earlier = names[:i]
        deps[name] = set(draw(st.lists(st.sampled_from(earlier), max_size=4))) if earlier else set()
    declared = draw(st.permutations(names))
    return list(declared), deps


@settings(max_examples=150, deadline=None)
@given(dags())
def test_levels_respect_every_edge(graph_data: tuple[list[str], dict[str, set[str]]]):
    nodes, deps = graph_data
    graph = Graph(nodes, deps)
    assert graph.find_cycle() is None
    level_of = {n: i for i, level in enumerate(graph.levels()) for n in level}
    assert sorted(level_of) == sorted(nodes)
    for node, ds in deps.items():
        for d in ds:
            assert level_of[d] < level_of[node]
        # As early as possible: one level after its latest dependency.
        assert level_of[node] == (max((level_of[d] for d in ds), default=-1) + 1)
    order = graph.topological_order()
    position = {n: i for i, n in enumerate(order)}
    assert all(position[d] < position[n] for n, ds in deps.items() for d in ds)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_any_back_edge_is_reported_as_a_real_cycle(
    graph_data: tuple[list[str], dict[str, set[str]]], data: st.DataObject
):
    nodes, deps = graph_data
    graph = Graph(nodes, deps)
    # Pick a path u -> ... -> v in the DAG (possibly u == v) and add the edge v -> u.
    start = data.draw(st.sampled_from(nodes))
    path = [start]
    while graph.dependents(path[-1]) and data.draw(st.booleans()):
        path.append(data.draw(st.sampled_from(graph.dependents(path[-1]))))
    u, v = path[0], path[-1]
    cyclic = {n: set(ds) for n, ds in deps.items()}
    cyclic[u].add(v)  # u now waits for v, which (transitively) waits for u
    bad = Graph(nodes, cyclic)
    cycle = bad.find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1] and len(cycle) >= 2
    for up, down in itertools.pairwise(cycle):
        assert up in bad.deps(down), (cycle, up, down)
    assert len(set(cycle[:-1])) == len(cycle) - 1  # a simple cycle
    with pytest.raises(CycleError) as info:
        bad.levels()
    assert " -> ".join(info.value.path) in str(info.value)


def test_cycle_is_named_in_data_flow_order():
    graph = Graph(["a", "b", "c"], {"a": {"c"}, "b": {"a"}, "c": {"b"}})
    assert graph.find_cycle() == ("a", "b", "c", "a")
    assert Graph(["a"], {"a": {"a"}}).find_cycle() == ("a", "a")


def test_declared_order_is_kept_within_a_level():
    graph = Graph(["z", "y", "x", "w"], {"w": {"z", "y"}})
    assert graph.levels() == (("z", "y", "x"), ("w",))
    assert graph.deps("w") == ("z", "y")
    assert graph.edges() == [("z", "w"), ("y", "w")]


def test_long_chain_needs_no_recursion():
    nodes = [f"s{i}" for i in range(5000)]
    graph = Graph(nodes, {n: {nodes[i - 1]} for i, n in enumerate(nodes) if i})
    assert len(graph.levels()) == 5000
    assert graph.critical_path_lengths()["s0"] == 5000


def test_unknown_dependencies_are_a_programming_error():
    with pytest.raises(ValueError, match="unknown"):
        Graph(["a"], {"a": {"b"}})
