"""The maximum-weight spanning arborescence (Chu-Liu/Edmonds, networkx) of candidate edges under a virtual root."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

ROOT = "<root>"


@dataclass
class Edge:
    parent: str
    child: str
    probability: float
    evidence: dict = field(default_factory=dict)


def arborescence(models: list[str], probability: dict[tuple[str, str], float],
                 root_probability: float | dict[str, float],
                 evidence: dict[tuple[str, str], dict] | None = None) -> tuple[list[Edge], list[str]]:
    """Edges a→b weigh log ``probability[(a, b)]``, the virtual root's edge to a model log ``root_probability`` (one
    for all, or one per model): a model is a root unless a parent beats it. Returns the edges (parent, child) and
    the roots."""
    graph = nx.DiGraph()
    graph.add_nodes_from([ROOT, *models])
    for m in models:
        r = root_probability[m] if isinstance(root_probability, dict) else root_probability
        graph.add_edge(ROOT, m, weight=math.log(max(r, 1e-12)))
    for (a, b), p in probability.items():
        graph.add_edge(a, b, weight=math.log(max(p, 1e-12)))
    tree = nx.maximum_spanning_arborescence(graph, attr="weight")
    edges = [Edge(a, b, probability[(a, b)], dict((evidence or {}).get((a, b), {}))) for a, b in tree.edges if a != ROOT]
    roots = sorted(b for a, b in tree.edges if a == ROOT)
    return sorted(edges, key=lambda e: (e.parent, e.child)), roots
