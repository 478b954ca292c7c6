"""Merges: a model whose weights are a weighted average of two others' (model soups, task arithmetic), so that it
has two parents.

m is a merge of u and v when its weight vector lies on the segment between theirs, m ≈ (1 − λ)·u + λ·v with
``lambda_min`` ≤ λ ≤ 1 − ``lambda_min``, and that line explains at least ``min_explained`` of m's squared distance
to the nearer of the two. A near-copy of u (int8, pruned) differs from it by noise the line does not explain. Exact,
from the float64 Gram matrix of the models' weight matrices aligned by name and shape (only models with the same
tensors as m are its candidates: a merge needs one architecture and head).

Defaults are our choice (no paper states a test): ``min_explained`` 0.98, ``lambda_min`` 0.1. Measured on the
digits lineage pool: weight averages explain 1.000; fine-tunes of one source on its own data move along a common
direction, so that a light fine-tune lies near the line from the source to a heavier relative (explained up to 0.91
on the MLP families). A merge that trims or sparsifies (TIES, DARE) leaves more residual than an average and may be
missed; task arithmetic off the segment (λ₁ + λ₂ ≠ 1) is not tested.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
import torch

from mgmp.representations.weights import gram

MIN_EXPLAINED = 0.98
LAMBDA_MIN = 0.1


@dataclass(frozen=True)
class Merge:
    """``child`` ≈ (1 − ``weight``)·first + ``weight``·second; ``explained``: the share of the child's squared
    distance to the nearer parent that the line through both parents explains."""

    child: str
    parents: tuple[str, str]
    weight: float
    explained: float

    def to_dict(self) -> dict:
        return asdict(self)


def merge_fit(g: np.ndarray) -> tuple[float, float]:
    """(λ, explained share) of m ≈ (1 − λ)·u + λ·v from the Gram matrix of (m, u, v); (nan, 0) when u = v, and an
    explained share of 0 when m equals one of them (a copy is not a merge)."""
    m, u, v = np.eye(3)
    d, e = m - u, v - u
    ee, de, dd = float(e @ g @ e), float(d @ g @ e), float(d @ g @ d)
    if ee <= 1e-12 * max(float(g[1, 1]), 1e-300):
        return math.nan, 0.0
    lam = de / ee
    residual = max(dd - de * de / ee, 0.0)
    nearer = min(dd, float((m - v) @ g @ (m - v)))
    return lam, (1.0 - residual / nearer) if nearer > 1e-12 * max(float(g[0, 0]), 1e-300) else 0.0


def is_merge(lam: float, explained: float, min_explained: float = MIN_EXPLAINED, lambda_min: float = LAMBDA_MIN) -> bool:
    return math.isfinite(lam) and lambda_min <= lam <= 1 - lambda_min and explained >= min_explained


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


def best_merge(child: str, candidates: list[str], weights: Callable[[str], Mapping[str, torch.Tensor]],
               min_explained: float = MIN_EXPLAINED, lambda_min: float = LAMBDA_MIN) -> Merge | None:
    """The pair of ``candidates`` that ``child`` is a merge of, the best explained (None without one).
    ``weights``: a model's weight matrices by name (:func:`mgmp.representations.weights.weight_state`; cache it:
    candidates repeat)."""
    own = weights(child)
    shapes = _shapes(own)
    states = {c: w for c in dict.fromkeys(candidates) if c != child and _shapes(w := weights(c)) == shapes}
    same = list(states)
    if len(same) < 2 or not shapes:
        return None
    g = gram([own, *states.values()], list(shapes))
    best = None
    for i, j in combinations(range(len(same)), 2):
        lam, explained = merge_fit(g[np.ix_([0, i + 1, j + 1], [0, i + 1, j + 1])])
        if is_merge(lam, explained, min_explained, lambda_min) and (best is None or explained > best.explained):
            # the first parent is the one the child is nearer to (λ ≤ 0.5 means nearer to u)
            first, second, w = (same[i], same[j], lam) if lam <= 0.5 else (same[j], same[i], 1 - lam)
            best = Merge(child, (first, second), w, explained)
    return best


def find_merges(ids: list[str], neighbours: Mapping[str, list[str]],
                weights: Callable[[str], Mapping[str, torch.Tensor]], **rule) -> dict[str, Merge]:
    """The merges among ``ids``: each model tested against the pairs of its candidate relatives (``neighbours``)."""
    found = [merge for m in ids if (merge := best_merge(m, list(neighbours.get(m, [])), weights, **rule)) is not None]
    kept: dict[str, Merge] = {}
    for merge in sorted(found, key=lambda x: -x.explained):  # of two claims that are each other's parent, the stronger
        if not any(merge.child in other.parents and other.child in merge.parents for other in kept.values()):
            kept[merge.child] = merge
    return kept

