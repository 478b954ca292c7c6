"""Recover the directed lineage forest of registered models whose edges are unknown (SPEC §12).

1. candidates: each model's ``top_k`` nearest by each DNA kind (FAISS, inner product on the registry's DNA
   vectors: ``weights`` finds weight-sharing relatives, ``gram`` the others); never all pairs;
2. relatedness of a candidate pair {a, b}: max(P_fused(a→b), P_fused(b→a)) of a calibrated fused model;
3. direction: :class:`~mgmp.forest.direction.DirectionModel` on the pair's antisymmetric evidence;
4. the maximum-weight spanning arborescence (Chu-Liu/Edmonds, networkx) of the graph whose edges a→b weigh
   log P(related) + log P(a→b), under a virtual root whose edge to every model weighs log ``min_related``:
   a model takes a parent only where P(related)·P(direction) beats it, else it is a root.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import networkx as nx
import numpy as np
from rich.progress import track

from mgmp.calibration.fusion import fused_probability
from mgmp.forest.direction import FEATURES, DirectionModel, edge_features
from mgmp.forest.signatures import WeightSignature, weight_signature
from mgmp.index.store import compute_dna, create_index, search
from mgmp.index.vectors import INDEX_DNA
from mgmp.scores import load_pair
from model_pool.errors import BadInput
from model_pool.pool import Pool

ROOT = "<root>"


@dataclass
class Edge:
    parent: str
    child: str
    p_related: float
    p_direction: float
    evidence: dict = field(default_factory=dict)


@dataclass
class Forest:
    """Recovered edges (parent → child) and roots of ``models``; ``candidates``: pairs scored."""

    models: list[str]
    edges: list[Edge]
    roots: list[str]
    candidates: int
    method: str
    seconds: float

    def parents(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {m: None for m in self.models}
        found.update({e.child: e.parent for e in self.edges})
        return found

    def to_dict(self) -> dict:
        return asdict(self)


def signatures(pool: Pool, ids: list[str]) -> tuple[dict[str, WeightSignature], dict[str, str]]:
    """Each model's weight signature and architecture."""
    sigs, arch = {}, {}
    for m in track(ids, description="weight signatures", transient=True):
        model, card = pool.load(m)
        sigs[m], arch[m] = weight_signature(model, card.num_classes), card.arch
    return sigs, arch


def candidate_pairs(pool: Pool, ids: list[str], top_k: int, dnas: tuple[str, ...] = INDEX_DNA) -> list[tuple[str, str]]:
    """Unordered pairs (a < b) in which one is among the other's ``top_k`` nearest by some DNA kind."""
    wanted = set(ids)
    others = set(pool.registry.ids()) - wanted
    pairs: set[tuple[str, str]] = set()
    for dna in dnas:
        compute_dna(pool, dna, exclude=others)
        vecs = {m: np.frombuffer(blob, dtype=np.float32) for _, m, _, blob in pool.registry.dna(dna) if m in wanted}
        by_dim: dict[int, list[str]] = {}
        for m in ids:
            if m in vecs:
                by_dim.setdefault(len(vecs[m]), []).append(m)
        for order in by_dim.values():  # models of one input space share a probe set, hence a dimension
            x = np.stack([vecs[m] for m in order])
            _, nearest = search(create_index("flat", x, None, x.shape[1]), x, min(top_k + 1, len(order)))
            pairs.update(tuple(sorted((order[i], order[j]))) for i, row in enumerate(nearest) for j in row
                         if 0 <= j != i)
    return sorted(pairs)


def fused_both_ways(pool: Pool, fused: dict, a: str, b: str) -> tuple[float, float]:
    """P_fused(a→b) and P_fused(b→a)."""
    p_ab, _ = fused_probability(fused, load_pair(pool.ref(a), pool.ref(b), pool=pool))
    p_ba, _ = fused_probability(fused, load_pair(pool.ref(b), pool.ref(a), pool=pool))
    return p_ab, p_ba


def arborescence(models: list[str], scored: dict[tuple[str, str], tuple[float, float, dict]],
                 min_related: float) -> tuple[list[Edge], list[str]]:
    """The maximum-weight spanning arborescence under a virtual root; ``scored``: {(a, b): (P(related),
    P(a→b), evidence)} for candidate edges in both orientations."""
    graph = nx.DiGraph()
    graph.add_nodes_from([ROOT, *models])
    for m in models:
        graph.add_edge(ROOT, m, weight=math.log(min_related))
    for (a, b), (p_rel, p_dir, _) in scored.items():
        graph.add_edge(a, b, weight=math.log(max(p_rel, 1e-12)) + math.log(max(p_dir, 1e-12)))
    tree = nx.maximum_spanning_arborescence(graph, attr="weight")
    edges = [Edge(a, b, scored[(a, b)][0], scored[(a, b)][1], scored[(a, b)][2]) for a, b in tree.edges if a != ROOT]
    roots = sorted(b for a, b in tree.edges if a == ROOT)
    return sorted(edges, key=lambda e: (e.parent, e.child)), roots


def recover(pool: Pool, ids: list[str], fused: dict, direction: DirectionModel, top_k: int = 5,
            dnas: tuple[str, ...] = INDEX_DNA, min_related: float = 0.5) -> Forest:
    """The lineage forest of ``ids`` (registered models) from a calibrated fused model (``describe()`` plus its
    ``methods``, e.g. ``Calibration.fused_fast``) and a direction model."""
    if len(ids) < 2:
        raise BadInput("a forest needs at least two models")
    t0 = time.perf_counter()
    sigs, arch = signatures(pool, ids)
    pairs = candidate_pairs(pool, ids, top_k, dnas)
    scored: dict[tuple[str, str], tuple[float, float, dict]] = {}
    for a, b in track(pairs, description=f"scoring {len(pairs)} candidate pairs", transient=True):
        p_ab, p_ba = fused_both_ways(pool, fused, a, b)
        p_rel = max(p_ab, p_ba)
        if p_rel < min_related:
            continue
        f = edge_features(sigs[a], sigs[b], arch[a] == arch[b], p_ab, p_ba)
        p_dir = direction.probability(f)
        evidence = dict(zip(FEATURES, f.tolist())) | {"fused": {"forward": p_ab, "backward": p_ba}}
        scored[(a, b)] = (p_rel, p_dir, evidence)
        scored[(b, a)] = (p_rel, 1 - p_dir, {k: -v if isinstance(v, float) else v for k, v in evidence.items()})
    edges, roots = arborescence(ids, scored, min_related)
    return Forest(list(ids), edges, roots, len(pairs), "fused", time.perf_counter() - t0)


def fit_direction(pool: Pool, ids: list[str], fused: dict) -> DirectionModel | None:
    """A direction model fit on the registered edges among ``ids`` (calibration families); None without edges."""
    wanted = set(ids)
    edges = [(p, c) for c in ids for p in pool.registry.parents(c) if p in wanted]
    if not edges:
        return None
    sigs, arch = signatures(pool, sorted({m for e in edges for m in e}))
    features = [edge_features(sigs[p], sigs[c], arch[p] == arch[c], *fused_both_ways(pool, fused, p, c))
                for p, c in track(edges, description=f"direction evidence of {len(edges)} edges", transient=True)]
    return DirectionModel.fit(np.array(features))
