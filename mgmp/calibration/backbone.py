"""Backbone-aware verdicts: derived from A, a sibling of A via their common starting point P, or cannot tell.

Read from the inheritance score (:mod:`mgmp.scores.inheritance`): ρ ≈ 1 when B carries what A owns beyond its
recipe, ≲ 0.5 for a sibling; drift = |B − A| / |A's own part|. When B has moved far beyond A's own part (A is a
light fine-tune of P, or B a heavy modification of A or of P), ρ's noise swamps that part for children and
siblings alike, and the verdict says so instead of guessing. A :class:`SiblingRule` (a threshold on ρ, a cap on
drift) is fit on a pool's calibration sibling pairs by ``mgmp calibrate``; before that, ``DEFAULT_RULE``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mgmp.calibration.thresholds import candidate_cuts
from mgmp.scores import Pair, compute, create_score
from mgmp.scores.inheritance import StartingPoint, starting_point
from model_pool.errors import NotApplicable

DERIVED, SIBLING, UNRESOLVED = "derived", "sibling", "cannot tell"
MIN_RESOLVED_ACCURACY = 0.95  # the sibling issue's target: the drift cap keeps the resolved pairs this accurate


@dataclass(frozen=True)
class SiblingRule:
    """Derived iff ρ ≥ ``threshold``, unless drift > ``max_drift`` (then: cannot tell)."""

    threshold: float
    max_drift: float
    fitted_on: int = 0  # calibration pairs (0: the documented default)

    def decide(self, rho: float, drift: float) -> str:
        if not math.isfinite(drift) or drift > self.max_drift:
            return UNRESOLVED
        return DERIVED if rho >= self.threshold else SIBLING

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "SiblingRule":
        return cls(**d) if d else DEFAULT_RULE

    @classmethod
    def fit(cls, rho, drift, derived, min_accuracy: float = MIN_RESOLVED_ACCURACY, min_pairs: int = 4) -> "SiblingRule":
        """The drift cap that resolves the most pairs while both kinds, derived and sibling, stay ≥ ``min_accuracy``
        on the resolved ones (each cap with its best worst-kind ρ threshold); the most accurate cap when none does."""
        rho, drift, derived = np.asarray(rho, float), np.asarray(drift, float), np.asarray(derived, bool)
        best = None
        for cap in np.unique(drift[np.isfinite(drift)]):
            kept = drift <= cap
            if kept.sum() < min_pairs or derived[kept].all() or not derived[kept].any():
                continue
            threshold, worst = _worst_kind_threshold(rho[kept], derived[kept])
            key = (worst >= min_accuracy, int(kept.sum()) if worst >= min_accuracy else worst, cap)
            if best is None or key > best[0]:
                best = (key, threshold, float(cap))
        if best is None:
            return DEFAULT_RULE
        return cls(best[1], best[2], int(len(rho)))


def _worst_kind_threshold(rho: np.ndarray, derived: np.ndarray) -> tuple[float, float]:
    """The ρ threshold (a midpoint) maximising the lower of the two kinds' accuracies, and that accuracy."""
    candidates = candidate_cuts(rho)
    above = rho[None, :] >= candidates[:, None]
    worst = np.minimum(above[:, derived].mean(1), (~above[:, ~derived]).mean(1))
    i = int(np.argmax(worst))
    return float(candidates[i]), float(worst[i])


# fit on the digits lineage pool's calibration split (192 pairs with drift; docs/results.md, "Shared backbones"),
# rounded: children of a heavily fine-tuned A drift ≤ 2.2 (pruned ones 5.8), its siblings with ρ > 0.6 drift ≥ 4.4
DEFAULT_RULE = SiblingRule(threshold=0.68, max_drift=4.6)


def known_start(pair: Pair, public_only: bool = False) -> StartingPoint | None:
    """The source's starting point (its registered parent, or a registered public backbone it was initialised
    from), when known; ``public_only``: only a public backbone. None for a source itself tagged public."""
    if pair.pool is not None and pair.source_id and pair.pool.registry.get(pair.source_id).tags.get("public"):
        return None
    try:
        start = starting_point(pair)
    except NotApplicable:
        return None
    return start if start.public or not public_only else None


def public_start(pair: Pair) -> StartingPoint | None:
    """The source's starting point when it is a registered public backbone (the backbone question applies), else
    None; a source that is itself tagged public has none."""
    return known_start(pair, public_only=True)


def backbone_verdict(pair: Pair, rule: SiblingRule = DEFAULT_RULE, cache: bool = True) -> dict | None:
    """Derived from A, sibling of A via P, or cannot tell, for a pair already judged related; None when no
    starting point P of A is known or B does not start from P (students: the question does not arise)."""
    try:
        result = compute(create_score("inheritance"), pair, cache=cache)
    except NotApplicable:
        return None
    extra = result.extra
    if "drift" not in extra:
        return None
    relation = rule.decide(result.value, extra["drift"])
    base = extra.get("base", "P")
    text = {DERIVED: "derived from the source",
            SIBLING: f"sibling of the source via {base} (both start from it; not derived from the source)",
            UNRESOLVED: f"derived from the source or a sibling via {base}: cannot tell (the suspect moved "
                        f"{extra['drift']:.1f}x the source's own change away; the cap is {rule.max_drift:.1f})"}[relation]
    return {"relation": relation, "text": text, "inheritance": result.value, "drift": extra["drift"], "base": base,
            "base_found": extra.get("base_found"), "base_public": extra.get("base_public"), "rule": rule.to_dict()}
