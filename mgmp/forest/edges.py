"""P(u is v's parent) for every ordered candidate pair: a logistic regression over the evidence of
:mod:`mgmp.forest.evidence`, fit on the registered edges of calibration families (their candidate pairs: true
edges against every other candidate, both orientations), with the probability a parent must beat for a model
not to be a root chosen there too (best directed-edge F1 of the recovered calibration forest).
Stored as plain JSON numbers (never pickled).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mgmp.calibration.fusion import FusedScore
from mgmp.forest.arborescence import arborescence
from mgmp.forest.evidence import Evidence


def f1(found: set, truth: set) -> float:
    right = len(found & truth)
    return 2 * right / (len(found) + len(truth)) if found or truth else 1.0


@dataclass(frozen=True)
class EdgeModel:
    model: dict  # a FusedScore description over the evidence's feature names
    root_probability: float
    fitted_on: dict

    def probabilities(self, evidence: Evidence) -> dict[tuple[str, str], float]:
        features = evidence.features()
        if not features:
            return {}
        keys = list(features)
        p = FusedScore.from_dict(self.model).predict_proba(np.stack([features[k] for k in keys]))
        return dict(zip(keys, p.tolist()))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EdgeModel":
        return cls(d["model"], d["root_probability"], d["fitted_on"])

    @classmethod
    def fit(cls, evidence: Evidence, truth: set[tuple[str, str]], C: float = 1.0) -> "EdgeModel":
        features = evidence.features()
        keys = list(features)
        y = np.array([k in truth for k in keys])
        if not y.any() or y.all():
            raise ValueError("the calibration families' candidate pairs need true and false edges")
        names = evidence.feature_names()
        model = FusedScore(names, [True] * len(names), C=C).fit(np.stack([features[k] for k in keys]), y)
        p = dict(zip(keys, model.predict_proba(np.stack([features[k] for k in keys])).tolist()))
        best = max((f1({(e.parent, e.child) for e in arborescence(evidence.ids, p, r)[0]}, truth), r)
                   for r in np.quantile(list(p.values()), np.linspace(0.5, 0.995, 40)))
        return cls(model.describe(), float(best[1]), {"pairs": len(keys), "edges": int(y.sum()), "f1": best[0]})
