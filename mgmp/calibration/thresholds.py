"""Decision thresholds of single scores: fit on calibration pairs, apply to a value."""
from __future__ import annotations

import numpy as np

from model_pool.errors import BadInput


def fit_threshold(values, related, higher_is_related: bool = True) -> float:
    """The decision threshold with the best accuracy on calibration pairs (midpoint between neighbours)."""
    v = np.asarray(values, dtype=float)
    r = np.asarray(related, dtype=bool)
    if not higher_is_related:
        v = -v
    ok = np.isfinite(v)
    v, r = v[ok], r[ok]
    if len(v) == 0:
        raise BadInput("no finite calibration scores to fit a threshold on")
    cands = candidate_cuts(v)
    acc = [((v >= c) == r).mean() for c in cands]
    best = float(cands[int(np.argmax(acc))])
    return best if higher_is_related else -best


def candidate_cuts(values: np.ndarray) -> np.ndarray:
    """Every distinct decision of ``value >= cut`` on ``values``: midpoints between neighbours and both ends."""
    cuts = np.unique(values)
    return np.concatenate([[cuts[0] - 1e-9], (cuts[1:] + cuts[:-1]) / 2, [cuts[-1] + 1e-9]])


def decide(value: float, threshold: float, higher_is_related: bool) -> bool:
    """Related iff the value is on the related side of the threshold (NaN: not related)."""
    if not np.isfinite(value):
        return False
    return value >= threshold if higher_is_related else value <= threshold
