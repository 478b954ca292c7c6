"""Which way an edge runs: P(a is b's parent | a and b are parent and child).

Evidence f(a→b), antisymmetric by construction (f(b→a) = −f(a→b)), so that P(a→b) = 1 − P(b→a):
kurtosis(b) − kurtosis(a) (MoTHer: fine-tuning raises it), zeros(b) − zeros(a) (pruning adds them),
log grid(a) − log grid(b) (quantisation shrinks the value grid), all three only within one architecture
(0 across architectures), and P_fused(a→b) − P_fused(b→a) (the pair scores read the source white-box and the
suspect black-box: they are asymmetric). ``DirectionModel``: a logistic regression without intercept over these,
fit on the true edges of calibration families in both orientations.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from mgmp.forest.signatures import WeightSignature

FEATURES = ("kurtosis", "zeros", "grid", "fused")


def edge_features(a: WeightSignature, b: WeightSignature, same_arch: bool, p_ab: float, p_ba: float) -> np.ndarray:
    """f(a→b): the evidence that a is b's parent (see the module docstring)."""
    weights = [b.kurtosis - a.kurtosis, b.zeros - a.zeros, math.log(a.grid) - math.log(b.grid)] if same_arch else [0.0] * 3
    return np.array(weights + [p_ab - p_ba], dtype=float)


@dataclass(frozen=True)
class DirectionModel:
    """P(a→b) = sigmoid(f(a→b) · coef / scale)."""

    coef: tuple[float, ...]
    scale: tuple[float, ...]
    fitted_on: int = 0  # true edges (0: a documented default)

    def probability(self, features: np.ndarray) -> float:
        z = float(np.dot(features / np.array(self.scale), self.coef))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "DirectionModel":
        return cls(tuple(d["coef"]), tuple(d["scale"]), d.get("fitted_on", 0)) if d else MOTHER_RULE

    @classmethod
    def fit(cls, features: np.ndarray, C: float = 1.0) -> "DirectionModel":
        """From the features of true edges, parent → child (each also seen reversed)."""
        x = np.concatenate([features, -features])
        y = np.r_[np.ones(len(features)), np.zeros(len(features))]
        scale = np.sqrt((x ** 2).mean(0))
        scale = np.where(scale > 0, scale, 1.0)
        lr = LogisticRegression(C=C, fit_intercept=False, max_iter=1000).fit(x / scale, y)
        return cls(tuple(float(c) for c in lr.coef_[0]), tuple(float(s) for s in scale), len(features))


# MoTHer's rule as a model: the higher-kurtosis model is the child, nothing else read (a pool without calibration
# families uses it); the kurtosis differences of fine-tunes measured on the digits pool are ~0.1-1, hence the scale
MOTHER_RULE = DirectionModel(coef=(10.0, 0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0, 1.0))
