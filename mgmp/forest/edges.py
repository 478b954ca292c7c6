"""P(u is v's parent) for every ordered candidate pair, learned from the registered edges of calibration families.

A gradient-boosted tree ensemble (scikit-learn's HistGradientBoostingClassifier: it takes the evidence's missing
values as they are, and on the digits lineage pool it doubled the directed-edge F1 of a logistic regression
over the same evidence, 0.35 -> 0.6; docs/results.md) over :mod:`mgmp.forest.evidence`, fit on the calibration
families' candidate pairs (true edges against every other candidate, both orientations). The probability a
parent must beat for a model not to be a root, ``root_probability`` × (1 − the model's highest fused P(lineage)
with a candidate), is chosen on out-of-family predictions (each calibration family
predicted by a model fit on the others) for the best directed-edge F1 of the recovered calibration forest.
The model is fit when a forest is recovered (seconds, from the pool's cached scores); what a pool keeps is its
training set as plain JSON numbers (``training()``; ``from_training`` refits the same model in about a second):
nothing is pickled.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold

from mgmp.forest.arborescence import arborescence
from mgmp.forest.evidence import Evidence
from model_pool.errors import BadInput

EDGES_KEY = "forest_edges"  # the calibration store's document: an edge model's training set


def f1(found: set, truth: set) -> float:
    right = len(found & truth)
    return 2 * right / (len(found) + len(truth)) if found or truth else 1.0


def _classifier(seed: int, edges: int) -> HistGradientBoostingClassifier:
    """Leaves of at least min(20, half the true edges) pairs: scikit-learn's default, smaller for small pools."""
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, class_weight="balanced",
                                          min_samples_leaf=max(2, min(20, edges // 2)), random_state=seed)


@dataclass
class EdgeModel:
    classifier: HistGradientBoostingClassifier
    root_probability: float
    fitted_on: dict
    x: np.ndarray
    y: np.ndarray
    seed: int = 0
    fused: dict | None = None  # the fast fused model its evidence was read with, when not the pool's (the shipped pair)

    def training(self) -> dict:
        """The training set and root probability as JSON (NaN as null)."""
        return {"x": [[None if not np.isfinite(v) else float(v) for v in row] for row in self.x],
                "y": self.y.astype(int).tolist(), "root_probability": self.root_probability,
                "fitted_on": self.fitted_on, "seed": self.seed}

    @classmethod
    def from_training(cls, d: dict) -> "EdgeModel":
        x = np.array([[np.nan if v is None else v for v in row] for row in d["x"]], dtype=float)
        y = np.array(d["y"], dtype=bool)
        return cls(_classifier(d["seed"], int(y.sum())).fit(x, y), d["root_probability"], d["fitted_on"], x, y,
                   d["seed"])

    def root_weights(self, evidence: Evidence) -> dict[str, float]:
        """P(model is a root) as the arborescence reads it: ``root_probability`` × (1 − its highest fused P(lineage)
        with a candidate): a model with a close relative is a root only when no relative is a likely parent."""
        return {m: self.root_probability * (1.0 - r) for m, r in evidence.relatedness().items()}

    def probabilities(self, evidence: Evidence) -> dict[tuple[str, str], float]:
        features = evidence.features()
        if not features:
            return {}
        keys = list(features)
        x = np.stack([features[k] for k in keys])
        if x.shape[1] != self.x.shape[1]:
            raise BadInput(f"the edge model was fit on {self.x.shape[1]} evidence features, this evidence has "
                           f"{x.shape[1]} (another mgmp version or fused model): run `mgmp forest` on the pool again")
        p = self.classifier.predict_proba(x)[:, 1]
        return dict(zip(keys, p.tolist()))

    @classmethod
    def fit(cls, evidence: Evidence, truth: set[tuple[str, str]], families: dict[str, str], seed: int = 0,
            folds: int = 4) -> "EdgeModel":
        """``families``: each model's family (its registered root), the unit held out when choosing the root
        probability."""
        features = evidence.features()
        keys = list(features)
        x, y = np.stack([features[k] for k in keys]), np.array([k in truth for k in keys])
        if not y.any() or y.all():
            raise ValueError("the calibration families' candidate pairs need true and false edges")
        groups = np.array([families[v] for _, v in keys])
        out_of_family = np.zeros(len(keys))
        for train, test in GroupKFold(n_splits=min(folds, len(set(groups)))).split(x, y, groups):
            if y[train].any() and not y[train].all():
                out_of_family[test] = _classifier(seed, int(y[train].sum())).fit(x[train], y[train]).predict_proba(
                    x[test])[:, 1]
        p = dict(zip(keys, out_of_family.tolist()))
        related = evidence.relatedness()
        best = max((f1({(e.parent, e.child) for e in arborescence(
            evidence.ids, p, {m: r * (1.0 - related[m]) for m in evidence.ids})[0]}, truth), float(r))
            for r in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0))
        return cls(_classifier(seed, int(y.sum())).fit(x, y), best[1],
                   {"pairs": len(keys), "edges": int(y.sum()), "out_of_family_f1": best[0]}, x, y, seed)
