"""``mgmp bench siblings``: derived from A, or a sibling of A via their common source? (issue 21)

Pairs: :func:`mgmp.calibration.fit.sibling_specs` (A = a fine-tuned child of a source; A's descendants are
derived from it, the source's other descendants are its siblings). Thresholds and a fused model are fit on
the calibration split's pairs, then applied to the evaluation split, as in ``mgmp bench lineage``; nothing is
stored in the pool's calibration.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from mgmp.bench.lineage import accuracy_table, table_markdown
from mgmp.calibration.fit import (
    CALIBRATION_SPLIT,
    fit_fusions,
    fit_thresholds,
    higher_is_related,
    score_pairs,
    sibling_specs,
)
from mgmp.calibration.fusion import FusedScore
from mgmp.calibration.thresholds import decide
from model_pool.errors import BadInput
from model_pool.pool import Pool

SIBLING_METHODS = {"weights": ("weights", {}), "inheritance": ("inheritance", {}), "basin": ("basin", {}),
                   "dna": ("dna", {}), "modeldiff": ("modeldiff", {})}
FUSED = "fused (with inheritance)"
FUSED_WITHOUT = "fused (without)"


def run(pool: Pool, methods: dict | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    methods = methods or SIBLING_METHODS
    specs = sibling_specs(pool.registry)
    cal = np.array([p.split == CALIBRATION_SPLIT for p in specs])
    if not specs or cal.all() or not cal.any():
        raise BadInput(f"{pool.root}: no sibling pairs in both splits (a source's fine-tuned child with descendants "
                       "of its own, in the calibration and evaluation splits)")
    scored = score_pairs(pool, specs, methods)
    values, higher = scored["values"], higher_is_related(methods)
    related = np.array([p.related for p in specs])
    thresholds = fit_thresholds(values, higher, related, cal)
    decisions = {c: [decide(v, thresholds[c], higher[c]) for v in vals] for c, vals in values.items()}
    fusions = {FUSED: list(methods), FUSED_WITHOUT: [c for c in methods if c != "inheritance"]}
    for name, described in fit_fusions(values, higher, related, cal, fusions).items():
        matrix = np.array([values[c] for c in described["columns"]]).T
        values[name] = FusedScore.from_dict(described).predict_proba(matrix).tolist()
        decisions[name] = [bool(v >= 0.5) for v in values[name]]
    table = accuracy_table(specs, decisions, ~cal)
    return {"pool": str(pool.root), "pairs": [vars(p) for p in specs], "values": values, "thresholds": thresholds,
            "table": table, "method_seconds": scored["seconds"],
            "n_pairs": {"calibration": int(cal.sum()), "evaluation": int((~cal).sum())}, "seconds": time.perf_counter() - t0}


def markdown(result: dict) -> str:
    cols = [c for c in next(iter(result["table"].values())) if c != "n"]
    text, _ = table_markdown(result["table"], [FUSED, FUSED_WITHOUT] + [c for c in cols if c not in (FUSED, FUSED_WITHOUT)])
    return text + f"\n\npairs: {result['n_pairs']['calibration']} calibration, {result['n_pairs']['evaluation']} evaluation"
