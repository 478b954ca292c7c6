"""MoTHer's rule (Horwitz et al., ICLR 2025), the weights-only baseline: within each architecture, every pair whose
weight cosine reaches ``min_cosine`` is a candidate edge; an edge u→v costs its weight distance (1 − cosine: scale
free, where the paper uses an L2 distance) plus λ when it runs against the kurtosis trend (kurtosis(v) <
kurtosis(u)); the minimum-cost spanning arborescence under a virtual root whose edges cost more than any
other, so that each connected cluster gets one root (the paper recovers one tree per cluster). λ: the median
candidate distance (the paper tunes it; our choice, an option). Sees neither students nor other architectures.
"""
from __future__ import annotations

import time
from itertools import combinations

import numpy as np

from mgmp.forest.arborescence import arborescence
from mgmp.forest.recover import Forest
from mgmp.forest.signatures import weight_signature
from mgmp.representations.weights import weight_cosine
from model_pool.pool import Pool


def mother_forest(pool: Pool, ids: list[str], min_cosine: float = 0.5, lam: float | None = None) -> Forest:
    t0 = time.perf_counter()
    loaded = {m: pool.load(m) for m in ids}
    models, arch = {m: x[0] for m, x in loaded.items()}, {m: x[1].arch for m, x in loaded.items()}
    kurtosis = {m: weight_signature(models[m], loaded[m][1].num_classes).kurtosis for m in ids}
    cosines = {}
    for a, b in combinations(ids, 2):
        if arch[a] == arch[b]:
            cos, shared = weight_cosine(models[a], models[b])
            if shared and cos >= min_cosine:
                cosines[(a, b)] = cos
    lam = lam if lam is not None else float(np.median([1 - c for c in cosines.values()])) if cosines else 0.0
    cost = {}
    for (a, b), cos in cosines.items():
        for u, v in ((a, b), (b, a)):
            against = kurtosis[v] < kurtosis[u]
            cost[(u, v)] = (1 - cos + (lam if against else 0.0), cos, not against)
    top = max((c for c, _, _ in cost.values()), default=0.0) + 1.0
    # costs as arborescence() weights: exp(−cost); the root's exp(−top) is below every edge's
    probability = {e: float(np.exp(-c)) for e, (c, _, _) in cost.items()}
    evidence = {e: {"weight_cosine": cos, "with_kurtosis_trend": follows} for e, (_, cos, follows) in cost.items()}
    edges, roots = arborescence(ids, probability, float(np.exp(-top)), evidence)
    return Forest(list(ids), edges, roots, len(cosines), "mother", time.perf_counter() - t0)
