"""``mgmp bench siblings``: derived from A, or a sibling of A via their common source? (issue 21)

Pairs: :func:`mgmp.calibration.fit.sibling_specs` (A = a fine-tuned child of a source; A's descendants are
derived from it, the source's other descendants are its siblings). Thresholds, the fused models and the
backbone verdict's rule are fit on the calibration split's pairs, then applied to the evaluation split, as in
``mgmp bench lineage``; nothing is stored in the pool's calibration. The verdict is what ``mgmp score fused``
answers: the fused model's "lineage", then the rule's derived / sibling / cannot tell where B starts from A's
starting point; its table gives accuracy on the pairs it resolves, how many it leaves unresolved, and accuracy
counting those as errors.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from mgmp.bench.lineage import accuracy_table, table_markdown
from mgmp.calibration.backbone import DERIVED, UNRESOLVED, SiblingRule
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


def has_pairs(pool: Pool) -> bool:
    """Whether the pool has sibling pairs in both splits (``run`` needs them)."""
    splits = {p.split == CALIBRATION_SPLIT for p in sibling_specs(pool.registry)}
    return splits == {True, False}


def run(pool: Pool, methods: dict | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    methods = methods or SIBLING_METHODS
    specs = sibling_specs(pool.registry)
    cal = np.array([p.split == CALIBRATION_SPLIT for p in specs])
    if not has_pairs(pool):
        raise BadInput(f"{pool.root}: no sibling pairs in both splits (a source's fine-tuned child with descendants "
                       "of its own, in the calibration and evaluation splits)")
    scored = score_pairs(pool, specs, methods, extras=True)
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
    verdict = {}
    if "inheritance" in methods:
        drift = np.array([e.get("drift", np.nan) for e in scored["extras"]["inheritance"]], dtype=float)
        rho, ok = np.array(values["inheritance"], dtype=float), np.isfinite(drift)
        rule = SiblingRule.fit(rho[cal & ok], drift[cal & ok], related[cal & ok])
        relations = [rule.decide(r, d) if f else None for r, d, f in zip(rho, drift, ok)]
        verdicts = [(DERIVED if r is None else r) if fused else "not related"
                    for r, fused in zip(relations, decisions[FUSED])]
        verdict = {"rule": rule.to_dict(), "verdicts": verdicts, "table": verdict_table(specs, verdicts, ~cal)}
    return {"pool": str(pool.root), "pairs": [vars(p) for p in specs], "values": values, "thresholds": thresholds,
            "table": table, "verdict": verdict, "method_seconds": scored["seconds"],
            "n_pairs": {"calibration": int(cal.sum()), "evaluation": int((~cal).sum())}, "seconds": time.perf_counter() - t0}


def verdict_table(specs: list, verdicts: list[str], mask: np.ndarray) -> dict[str, dict]:
    """{row: n, cannot tell (fraction), accuracy on the resolved pairs, accuracy with "cannot tell" as an error}."""
    rows: dict[str, list[int]] = {}
    for i, p in enumerate(specs):
        if mask[i]:
            for row in (p.row, "all derived pairs" if p.related else "all sibling pairs", "overall"):
                rows.setdefault(row, []).append(i)
    table = {}
    for row, idx in rows.items():
        resolved = [i for i in idx if verdicts[i] != UNRESOLVED]
        right = sum((verdicts[i] == DERIVED) == specs[i].related for i in resolved)
        table[row] = {"n": len(idx), "cannot tell": 1 - len(resolved) / len(idx),
                      "accuracy (resolved)": right / len(resolved) if resolved else float("nan"),
                      "accuracy (cannot tell = wrong)": right / len(idx)}
    return table


def markdown(result: dict) -> str:
    cols = [c for c in next(iter(result["table"].values())) if c != "n"]
    text, _ = table_markdown(result["table"], [FUSED, FUSED_WITHOUT] + [c for c in cols if c not in (FUSED, FUSED_WITHOUT)])
    text += f"\n\npairs: {result['n_pairs']['calibration']} calibration, {result['n_pairs']['evaluation']} evaluation"
    if verdict := result.get("verdict"):
        rule = verdict["rule"]
        text += (f"\n\nVerdict (fused, then the backbone rule: derived iff inheritance >= {rule['threshold']:.3f}, "
                 f"cannot tell above drift {rule['max_drift']:.2f}):\n\n" + table_markdown(verdict["table"], [
                     "cannot tell", "accuracy (resolved)", "accuracy (cannot tell = wrong)"])[0])
    return text
