"""Calibrate a pool without a benchmark: score its calibration pairs, fit one threshold per score and
the fused models, store them (``mgmp calibrate POOL``).

Pairs: every source (registry tag ``role: source``) against all its descendants (lineage) and
against independent models of its split: hard negatives (same recipe, other seed), models
transferred from an unrelated source, the other sources and a sample of their descendants. A pool
without role tags (a user's own) takes every root with descendants as a source, its descendants
as lineage and the other families as independents, all of them calibration pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from rich.progress import Progress

from mgmp.calibration.backbone import SiblingRule
from mgmp.calibration.domains import fit_test, score_domain, test_columns
from mgmp.calibration.fusion import FusedScore, support_threshold
from mgmp.calibration.null import DEFAULT_REFERENCES
from mgmp.calibration.store import Calibration
from mgmp.calibration.thresholds import fit_threshold
from mgmp.scores import SCORES, compute, create_score, load_pair
from model_pool.errors import BadInput, NotApplicable
from model_pool.pool import Pool
from model_pool.registry import PoolRegistry

# column -> (score method, params): what a pool is calibrated on
METHODS: dict[str, tuple[str, dict]] = {
    "closeness": ("closeness", {}),
    "closeness (no test-set gen.)": ("closeness", {"generate": False}),
    "basin": ("basin", {}),
    "zest": ("zest", {}),
    "modeldiff": ("modeldiff", {}),
    "ipguard": ("ipguard", {}),
    "sac": ("sac", {}),
    "dna": ("dna", {}),
    "weights": ("weights", {}),
    "generated": ("generated", {}),
    "cae": ("cae", {}),
    "dataset_inference": ("dataset_inference", {}),
}
# the cheap scores (no generated test sets or references): the fast fused model re-ranks index queries
FAST_SCORES = ("closeness (no test-set gen.)", "basin", "modeldiff", "sac", "dna", "weights")
# the scores built for students and thieves (their references are generated per source, then milliseconds per
# suspect): the student check of index queries reads their fused model, once per registry root. Dataset inference
# is left out: it asks whether the suspect was trained on the source's data (independents of the same data too),
# and its blind walks cost seconds per suspect (docs/results.md)
STUDENT_SCORES = ("generated", "cae")
STUDENT_RELATIONS = ("distill", "extract")  # trained from their own initialisation: no weight inherited
FUSED_SCORES, FUSED_FAST, FUSED_STUDENTS = "fused (scores only)", "fused (fast scores)", "fused (student scores)"
CALIBRATION_SPLIT = "calibration"


@dataclass
class PairSpec:
    source: str
    suspect: str
    related: bool
    row: str
    split: str


def pair_specs(reg: PoolRegistry, per_family: int = 4, seed: int = 0) -> list[PairSpec]:
    """The calibration and evaluation pairs of a pool (see the module docstring)."""
    rows = {r.id: r for r in reg.models()}
    sources = sorted(i for i, r in rows.items() if r.tags.get("role") == "source")
    if not sources:
        return _untagged_specs(reg, per_family, seed)
    family = {s: set(reg.descendants(s)) for s in sources}
    rng = np.random.default_rng(seed)
    specs = []
    for s in sources:
        split = rows[s].split
        specs += _lineage_specs(reg, s, rows, split)
        for i, r in sorted(rows.items()):
            if r.split != split or i == s or i in family[s]:
                continue
            if r.tags.get("role") == "independent":
                unrelated = any(rows[p].tags.get("role") == "unrelated-source" for p in reg.ancestors(i))
                specs.append(PairSpec(s, i, False, "independent: from unrelated source" if unrelated
                                      else "independent: same recipe, other seed", split))
            elif r.tags.get("role") == "source":
                specs += _other_family_specs(s, i, family[i], per_family, rng, split)
    return specs


def sibling_specs(reg: PoolRegistry, min_descendants: int = 3) -> list[PairSpec]:
    """The backbone question's pairs: A = a fine-tuned child of a source with ≥ ``min_descendants`` descendants
    of its own; A's descendants are derived from it, the source's other descendants are A's siblings (they
    share the source as a common ancestor but were not made from A)."""
    rows = {r.id: r for r in reg.models()}
    specs = []
    for s in sorted(i for i, r in rows.items() if r.tags.get("role") == "source"):
        family = reg.descendants(s)
        for a in sorted(c for c in reg.children(s) if rows[c].relation == "finetune"):
            mine = reg.descendants(a)
            if len(mine) < min_descendants:
                continue
            for b in sorted(family):
                if b != a:
                    derived = b in mine
                    specs.append(PairSpec(a, b, derived, f"derived from A: {rows[b].relation}" if derived
                                          else f"sibling via the source: {rows[b].relation}", rows[s].split))
    return specs


def relation_row(row) -> str:
    """A descendant's relation as benchmarks report it; a student's with where its queries came from, its budget,
    whether it saw labels only, and "control" for the plan's controls (queries on the source's own inputs)."""
    params = row.recipe.get("params", {}) if isinstance(row.recipe, dict) else {}
    query = params.get("query_data")
    if row.relation not in ("extract", "distill") or not query:
        return row.relation
    detail = [params.get("surrogate") or query if query == "surrogate" else query]
    if params.get("queries"):
        detail.append(f"{params['queries']} queries")
    if row.relation == "extract":
        detail.append(params.get("outputs", "probabilities"))
    if row.tags.get("control"):
        detail.append("control")
    return f"{row.relation} ({', '.join(str(d) for d in detail)})"


def _lineage_specs(reg: PoolRegistry, source: str, rows: dict, split: str | None) -> list[PairSpec]:
    return [PairSpec(source, d, True, relation_row(rows[d]) if depth == 1 else f"{relation_row(rows[d])} (gen {depth})",
                     split)
            for d, depth in sorted(reg.descendants(source).items())]


def _other_family_specs(source: str, other: str, kids: set[str], per_family: int, rng, split) -> list[PairSpec]:
    specs = [PairSpec(source, other, False, "independent: other source", split)]
    kids = sorted(kids)
    for k in rng.choice(kids, size=min(per_family, len(kids)), replace=False):
        specs.append(PairSpec(source, str(k), False, "independent: other source's descendant", split))
    return specs


def _untagged_specs(reg: PoolRegistry, per_family: int, seed: int) -> list[PairSpec]:
    rows = {r.id: r for r in reg.models()}
    family = {r: set(reg.descendants(r)) for r in reg.roots()}
    sources = sorted(r for r, kids in family.items() if kids)
    if not sources or len(family) < 2:
        raise BadInput(f"{reg.root}: calibration needs a root with descendants and another family "
                       "(or models tagged role: source)")
    rng = np.random.default_rng(seed)
    specs = []
    for s in sources:
        specs += _lineage_specs(reg, s, rows, CALIBRATION_SPLIT)
        for other in sorted(family):
            if other != s:
                specs += _other_family_specs(s, other, family[other], per_family, rng, CALIBRATION_SPLIT)
    return specs


def score_pairs(pool: Pool, specs: list[PairSpec], methods: dict[str, tuple[str, dict]],
                extras: bool = False) -> dict[str, dict]:
    """Every method's value on every pair (NaN where not applicable), from the pool's score cache when present,
    each method's seconds of fresh computation, and with ``extras`` each result's scalar extras ({} where none)."""
    scorers = {col: create_score(name, **params) for col, (name, params) in methods.items()}
    values: dict[str, list[float]] = {col: [] for col in methods}
    found: dict[str, list[dict]] = {col: [] for col in methods}
    seconds = {col: 0.0 for col in methods}
    with Progress(transient=True) as bar:
        task = bar.add_task("scoring pairs", total=len(specs) * len(methods))
        for spec in specs:
            pair = load_pair(pool.ref(spec.source), pool.ref(spec.suspect), pool=pool)
            for col, scorer in scorers.items():
                bar.update(task, description=f"{col}: {spec.source} vs {spec.suspect}")
                try:
                    res = compute(scorer, pair)
                    values[col].append(res.value)
                    seconds[col] += 0 if res.cached else res.seconds
                    found[col].append({k: v for k, v in res.extra.items() if isinstance(v, (int, float, str, bool))})
                except NotApplicable:
                    values[col].append(math.nan)
                    found[col].append({})
                bar.advance(task)
    return {"values": values, "seconds": seconds} | ({"extras": found} if extras else {})


def inheritance_values(pool, specs) -> tuple[np.ndarray, np.ndarray]:
    """ρ and drift of the inheritance score on ``specs`` (PairSpecs of ``pool``); drift NaN where the score
    does not apply or B does not start from A's starting point."""
    scored = score_pairs(pool, specs, {"inheritance": ("inheritance", {})}, extras=True)
    drift = [e.get("drift", math.nan) for e in scored["extras"]["inheritance"]]
    return np.array(scored["values"]["inheritance"], dtype=float), np.array(drift, dtype=float)


def fit_rule(pool, specs) -> SiblingRule | None:
    """The pool's sibling rule from ``specs`` (derived-from-A and sibling pairs); None without both kinds."""
    rho, drift = inheritance_values(pool, specs)
    related = np.array([s.related for s in specs])
    ok = np.isfinite(drift)
    if not related[ok].any() or related[ok].all():
        return None
    return SiblingRule.fit(rho[ok], drift[ok], related[ok])


def higher_is_related(methods: dict[str, tuple[str, dict]]) -> dict[str, bool]:
    return {col: SCORES.get(name).higher_is_related for col, (name, _) in methods.items()}


def fit_thresholds(values: dict[str, list[float]], higher: dict[str, bool], related: np.ndarray,
                   mask: np.ndarray) -> dict[str, float]:
    """Each column's best-accuracy threshold on the ``mask``ed (calibration) pairs."""
    return {col: fit_threshold(np.array(v)[mask], related[mask], higher[col]) for col, v in values.items()}


def fit_fusions(values: dict[str, list[float]], higher: dict[str, bool], related: np.ndarray, mask: np.ndarray,
                fusions: dict[str, list[str]]) -> dict[str, dict]:
    """Fused models ({name: columns}) fit on the ``mask``ed pairs, each described with its query support threshold."""
    out = {}
    for name, cols in fusions.items():
        if not cols:
            continue
        matrix = np.array([values[c] for c in cols]).T
        fused = FusedScore(cols, [higher[c] for c in cols]).fit(matrix[mask], related[mask])
        out[name] = fused.describe() | {"support_threshold": support_threshold(fused, matrix[mask], related[mask])}
    return out


def default_fusions(methods: dict[str, tuple[str, dict]]) -> dict[str, list[str]]:
    return {FUSED_SCORES: list(methods), FUSED_FAST: [c for c in FAST_SCORES if c in methods],
            FUSED_STUDENTS: [c for c in STUDENT_SCORES if c in methods]}


def to_calibration(methods: dict[str, tuple[str, dict]], thresholds: dict[str, float],
                   fused_models: dict[str, dict]) -> Calibration:
    """What the pool keeps: thresholds of the default-parameter columns, the three score-only fused models."""
    kept = {name: {"params_hash": create_score(name, **params).params_hash(), "threshold": thresholds[col]}
            for col, (name, params) in methods.items() if col == name and col in thresholds}
    stored = {}
    for name in (FUSED_SCORES, FUSED_FAST, FUSED_STUDENTS):
        if name in fused_models:
            stored[name] = fused_models[name] | {"methods": {c: methods[c] for c in fused_models[name]["columns"]}}
    return Calibration(kept, stored.get(FUSED_SCORES), stored.get(FUSED_FAST),
                       fused_students=stored.get(FUSED_STUDENTS))


def calibrate(pool: Pool, methods: dict[str, tuple[str, dict]] | None = None, seed: int = 0,
              on_pairs: Callable[[int], None] | None = None, references: int = DEFAULT_REFERENCES,
              test: bool = True) -> Calibration:
    """Score the pool's calibration pairs, fit thresholds and fused models (and the backbone verdict's rule
    where the split has sibling pairs: ``sibling_specs``; with ``test``, the pool's own fused test over the scores
    normalised by each source's ``references`` independents), store and return them."""
    methods = methods or METHODS
    specs = [s for s in pair_specs(pool.registry, seed=seed) if s.split == CALIBRATION_SPLIT]
    related = np.array([s.related for s in specs])
    if not related.any() or related.all():
        raise BadInput(f"{pool.root}: the calibration split needs both lineage and independent pairs")
    if on_pairs:
        on_pairs(len(specs))
    values = score_pairs(pool, specs, methods)["values"]
    higher = higher_is_related(methods)
    mask = np.ones(len(specs), dtype=bool)
    cal = to_calibration(methods, fit_thresholds(values, higher, related, mask),
                         fit_fusions(values, higher, related, mask, default_fusions(methods)))
    siblings = [s for s in sibling_specs(pool.registry) if s.split == CALIBRATION_SPLIT]
    if siblings and (rule := fit_rule(pool, siblings)) is not None:
        cal.siblings = rule.to_dict()
    null_columns, raw_columns = test_columns(methods)
    if test and (null_columns or raw_columns):
        rows = score_domain(pool, specs, references, null_columns, raw_columns)
        cal.fused_test = fit_test([rows], references).to_dict()
    cal.save(pool, replace_scores=True)
    return cal
