"""Fused provenance without an MGMP checkpoint: a logistic regression over the pair scores.

Each score is oriented so that higher means related; a score a method cannot compute for a pair
(NaN, e.g. the basin test across architectures) is filled with the calibration pairs' least related
value and flagged by a missing-indicator feature. Fit on calibration pairs only; stored as plain
JSON numbers (never pickled), so a pool can carry its fused model in the registry.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from mgmp.scores import Pair, compute, create_score
from model_pool.errors import NotApplicable

SUPPORT_FPR = 0.01  # a query tests many candidates at once: its support threshold keeps calibration FPs at 1 %


class FusedScore:
    """``fit(values, related)`` on (pairs, methods) matrices; ``predict_proba`` -> P(lineage) per pair."""

    def __init__(self, columns: list[str], higher_is_related: list[bool], C: float = 1.0, indicators: bool = True):
        self.columns, self.higher, self.C = list(columns), np.array(higher_is_related, dtype=bool), C
        self.indicators = indicators  # missing-value indicator features (off: a missing score is only filled)
        self.fill = self.mean = self.scale = self.coef = None
        self.intercept = 0.0

    def _features(self, values: np.ndarray) -> np.ndarray:
        v = np.where(self.higher, values, -values).astype(float)
        missing = ~np.isfinite(v)
        v = np.where(missing, self.fill, v)
        return np.concatenate([v, missing.astype(float)], axis=1) if self.indicators else v

    def fit(self, values: np.ndarray, related: np.ndarray) -> "FusedScore":
        from sklearn.linear_model import LogisticRegression  # scikit-learn costs a second to import: only when used
        from sklearn.preprocessing import StandardScaler

        v = np.where(self.higher, values, -values).astype(float)
        finite = np.where(np.isfinite(v), v, np.inf)
        self.fill = np.where(np.isfinite(finite.min(0)), finite.min(0), 0.0)
        x = self._features(values)
        scaler = StandardScaler().fit(x)
        lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000).fit(scaler.transform(x), related)
        self.mean, self.scale = scaler.mean_, scaler.scale_
        self.coef, self.intercept = lr.coef_[0], float(lr.intercept_[0])
        return self

    def predict_proba(self, values: np.ndarray) -> np.ndarray:
        z = (self._features(np.atleast_2d(values)) - self.mean) / self.scale @ self.coef + self.intercept
        return 1 / (1 + np.exp(-z))

    def describe(self) -> dict[str, Any]:
        return {"columns": self.columns, "higher_is_related": self.higher.tolist(), "C": self.C,
                "indicators": self.indicators,
                "fill": self.fill.tolist(), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FusedScore":
        f = cls(d["columns"], d["higher_is_related"], d["C"], d.get("indicators", True))
        f.fill, f.mean, f.scale, f.coef = (np.array(d[k], dtype=float) for k in ("fill", "mean", "scale", "coef"))
        f.intercept = float(d["intercept"])
        return f


def support_threshold(fused: FusedScore, values: np.ndarray, related: np.ndarray) -> float:
    """The fused P above which at most ``SUPPORT_FPR`` of the calibration negatives fall (for ancestor queries)."""
    negatives = fused.predict_proba(values[~related])
    return float(np.quantile(negatives, 1 - SUPPORT_FPR, method="higher")) + 1e-9


def score_values(pair: Pair, methods: dict[str, tuple[str, dict]], cache: bool = True,
                 max_queries: int | None = None) -> dict[str, float]:
    """{column: value} of ``methods`` ({column: (method, params)}) on one pair; NaN where not applicable."""
    out = {}
    for col, (name, params) in methods.items():
        try:
            out[col] = compute(create_score(name, **params), pair, cache=cache, max_queries=max_queries).value
        except NotApplicable:
            out[col] = math.nan
    return out


def fused_probability(stored: dict[str, Any], pair: Pair, cache: bool = True,
                      max_queries: int | None = None) -> tuple[float, dict[str, float]]:
    """P(lineage) of a stored fused model (``describe()`` plus its ``methods``) on one pair, and the scores."""
    values = score_values(pair, stored["methods"], cache, max_queries)
    p = float(FusedScore.from_dict(stored).predict_proba(np.array([[values[c] for c in stored["columns"]]]))[0])
    return p, values
