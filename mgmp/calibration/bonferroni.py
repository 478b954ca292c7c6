"""A verdict test that needs no fitting: Bonferroni over the scores read against the source's null (SPEC §13).

Each null column gives a p-value of "the suspect is as related to A as A's references are" (its predictive-t tail,
:mod:`mgmp.calibration.null`); the test rejects H0 = "independent of A" at level α iff the smallest of the m
p-values that could be computed is ≤ α / m, so its false-positive rate is at most α whatever the scores' dependence
(Model Provenance Testing's multiple-testing control). Nothing is learned, so it carries to any domain as it is:
it is the test of causal language models (:func:`lm_test`), where no pool of LMs is large enough to fit a fused model
on, and, being a rule with nothing fitted, it ships as code rather than as a calibration file. A suspect queried as a
black box (an endpoint) simply has fewer p-values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# the LM test's columns: next-token agreement and distribution distance (black box), then representations and
# weights (white box); weights are read against the null too, since A's references may share A's public start.
# ``inheritance`` (what A owns beyond re-runs of its recipe from its starting point) separates A's descendants from
# other fine-tunes of its base when A's own change is tiny, in weights and (``lm_inheritance``, black box) in
# next-token distributions; both apply where A's starting point is known (a registered parent, or --base)
LM_COLUMNS: dict[str, tuple[str, dict]] = {
    "lm_tokens": ("lm_tokens", {}), "lm_logprob": ("lm_logprob", {}), "lm_inheritance": ("lm_inheritance", {}),
    "lm_cka": ("lm_cka", {}), "lm_invariant": ("lm_invariant", {}), "weights": ("weights", {}),
    "inheritance": ("inheritance", {})}


@dataclass
class BonferroniTest:
    """Derived iff min p ≤ α / m over the m null columns that apply to the pair."""

    null_columns: dict[str, tuple[str, dict]]
    fitted_on: dict[str, Any] = field(default_factory=dict)
    raw_columns: dict[str, tuple[str, dict]] = field(default_factory=dict)
    # no backbone step after "derived": with a public start the references already are A's siblings, and the
    # step's reading (inheritance from re-runs of A's recipe) is a column of the test itself
    backbone: bool = False

    def decide(self, against: dict[str, dict], values: dict[str, float], alpha: float) -> tuple[float, float, str]:
        """(P: none, NaN; the Bonferroni-adjusted p-value; how it was formed)."""
        used = [c for c in self.null_columns if math.isfinite(against.get(c, {}).get("p", math.nan))]
        if not used:
            return math.nan, math.nan, "no score of the test applies to this pair"
        p = min(1.0, len(used) * min(against[c]["p"] for c in used))
        return math.nan, p, f"Bonferroni over {len(used)} scores: {', '.join(used)}"


def lm_test() -> BonferroniTest:
    """The verdict test of causal language models."""
    return BonferroniTest(dict(LM_COLUMNS), {"fitted": False, "why": "Bonferroni: a stated level with nothing fitted"})
