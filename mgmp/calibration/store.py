"""What calibration leaves in a pool, and how every consumer reads it.

Seven JSON documents in the pool's calibration store (``Pool.calibration``), written by
``mgmp calibrate`` (and by the benchmarks, through the same functions):
``thresholds`` {method: {params_hash, threshold}} for ``mgmp score``; ``fused_scores``, the fused
model over every calibrated score; ``fused_fast``, the one over the cheap scores (ancestor queries
re-rank with it); ``fused_students``, the one over the scores built for students and thieves
(a query no cheap score supports checks the registry's roots with it); ``query_calibration``, the
query's support threshold, ancestor tolerance and student threshold; ``sibling_rule``, the backbone
verdict's thresholds (:mod:`mgmp.calibration.backbone`); ``fused_test``, the pool's own fused test over scores
normalised by each source's null (:mod:`mgmp.calibration.verdict`; without it ``mgmp score fused`` uses the one
the package ships).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mgmp.scores import PairScore
from model_pool.pool import Pool

THRESHOLDS_KEY = "thresholds"
FUSED_KEY = "fused_scores"
FUSED_FAST_KEY = "fused_fast"
FUSED_STUDENTS_KEY = "fused_students"
QUERY_KEY = "query_calibration"
SIBLING_KEY = "sibling_rule"
FUSED_TEST_KEY = "fused_test"


@dataclass
class Calibration:
    """A pool's calibration; every part is None (or empty) until calibrated."""

    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    fused: dict[str, Any] | None = None
    fused_fast: dict[str, Any] | None = None
    query: dict[str, Any] | None = None
    siblings: dict[str, Any] | None = None
    fused_students: dict[str, Any] | None = None
    fused_test: dict[str, Any] | None = None

    @classmethod
    def load(cls, pool: Pool | None) -> "Calibration":
        """The pool's stored calibration (an empty one outside a pool)."""
        if pool is None:
            return cls()
        store = pool.calibration
        return cls(store.get(THRESHOLDS_KEY) or {}, store.get(FUSED_KEY), store.get(FUSED_FAST_KEY), store.get(QUERY_KEY),
                   store.get(SIBLING_KEY), store.get(FUSED_STUDENTS_KEY), store.get(FUSED_TEST_KEY))

    def save(self, pool: Pool, replace_scores: bool = False) -> None:
        """Write the parts that are set (a part left None keeps what the pool had). ``replace_scores``: a new score
        calibration replaces the old one whole: its thresholds and fused models, and the query calibration chosen
        on the old fast fused model, are removed where this one has none (a student model fitted on other scores
        would otherwise outlive it)."""
        store = pool.calibration
        parts = ((THRESHOLDS_KEY, self.thresholds or None), (FUSED_KEY, self.fused), (FUSED_FAST_KEY, self.fused_fast),
                 (QUERY_KEY, self.query), (SIBLING_KEY, self.siblings), (FUSED_STUDENTS_KEY, self.fused_students),
                 (FUSED_TEST_KEY, self.fused_test))
        for key, value in parts:
            if value is not None:
                store.put(key, value)
            elif replace_scores and key != SIBLING_KEY:
                store.delete(key)

    def threshold(self, score: PairScore) -> float | None:
        """The calibrated threshold of ``score`` when it was calibrated with the same parameters."""
        known = self.thresholds.get(score.name)
        return known["threshold"] if known and known["params_hash"] == score.params_hash() else None
