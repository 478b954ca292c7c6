"""Pair scores as extra inputs of the MGMP provenance classifier (its ``n_extra`` hook).

Per method two features: the score oriented so that higher means related (lower-is-related scores
are negated), and a flag set when the method cannot compare the pair (the value is then 0).
"""
from __future__ import annotations

import math

import torch
from rich.progress import track

from mgmp.scores import Pair, compute, create_score, load_pair
from model_pool.errors import NotApplicable
from model_pool.pool import Pool


def n_features(methods: dict | None) -> int:
    return 2 * len(methods or {})


def pair_features(pair: Pair, methods: dict[str, dict]) -> torch.Tensor:
    """(2 · len(methods),) features of one pair, each score cached in the registry when the pair is a pool's."""
    out = []
    for name, params in methods.items():
        method = create_score(name, **(params or {}))
        try:
            res = compute(method, pair)
            v = res.value if res.higher_is_related else -res.value
        except NotApplicable:
            v = math.nan
        out += [0.0, 1.0] if not math.isfinite(v) else [v, 0.0]
    return torch.tensor(out, dtype=torch.float32)


def pool_features(pool: Pool, pairs: list[tuple[str, str]], methods: dict[str, dict]) -> dict[tuple[str, str], torch.Tensor]:
    """Features of (source id, model id) pairs of one pool."""
    return {(s, m): pair_features(load_pair(pool.ref(s), pool.ref(m), pool=pool), methods)
            for s, m in track(sorted(set(pairs)), description="pair scores for MGMP", transient=True)}
