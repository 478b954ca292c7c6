"""``mgmp bench lineage``: Table-2-style determination accuracy per relation on the lineage pool.

Pairs: every source (registry tag ``role: source``) against all its descendants (lineage) and
against independent models of its split: hard negatives (same recipe, other seed), models
transferred from an unrelated source, the other sources and a sample of their descendants.
Thresholds (and the fused logistic regression) are fit on the calibration split's pairs only and
applied to the evaluation split. MGMP is trained leave-one-family-out (the evaluated source's
family never seen in training) and decides at its own δ.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from mgmp.scores import SCORES, compute, create_score, load_pair
from mgmp.scores.base import NotApplicable, decide, fit_threshold
from mgmp.scores.fusion import FusedScore
from model_pool.errors import MgmpError
from model_pool.registry import PoolRegistry

# column -> (score method, params)
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
}


@dataclass
class PairSpec:
    source: str
    suspect: str
    related: bool
    row: str
    split: str


def pair_specs(reg: PoolRegistry, per_family: int = 4, seed: int = 0) -> list[PairSpec]:
    """The benchmark's pairs for every source of the pool (see the module docstring)."""
    rows = {r.id: r for r in reg.models()}
    sources = sorted(i for i, r in rows.items() if r.tags.get("role") == "source")
    if not sources:
        raise MgmpError(f"{reg.root}: no model tagged role: source (not a lineage benchmark pool)")
    family = {s: set(reg.descendants(s)) for s in sources}
    rng = np.random.default_rng(seed)
    specs = []
    for s in sources:
        split = rows[s].split
        for d, depth in sorted(reg.descendants(s).items()):
            rel = rows[d].relation
            specs.append(PairSpec(s, d, True, rel if depth == 1 else f"{rel} (gen {depth})", split))
        for i, r in sorted(rows.items()):
            if r.split != split or i == s or i in family[s]:
                continue
            if r.tags.get("role") == "independent":
                unrelated = any(rows[p].tags.get("role") == "unrelated-source" for p in reg.ancestors(i))
                specs.append(PairSpec(s, i, False, "independent: from unrelated source" if unrelated
                                      else "independent: same recipe, other seed", split))
            elif r.tags.get("role") == "source":
                specs.append(PairSpec(s, i, False, "independent: other source", split))
                kids = sorted(family[i])
                for k in rng.choice(kids, size=min(per_family, len(kids)), replace=False):
                    specs.append(PairSpec(s, str(k), False, "independent: other source's descendant", split))
    return specs


def score_all(pool: str, specs: list[PairSpec], methods: dict[str, tuple[str, dict]]) -> dict[str, list[float]]:
    """Every method's value on every pair (NaN where not applicable), from the registry cache when present."""
    scorers = {col: create_score(name, **params) for col, (name, params) in methods.items()}
    values = {col: [] for col in methods}
    seconds = {col: 0.0 for col in methods}
    with Progress(transient=True) as bar:
        task = bar.add_task("scoring pairs", total=len(specs) * len(methods))
        for spec in specs:
            pair = load_pair(f"{pool}::{spec.source}", f"{pool}::{spec.suspect}")
            for col, scorer in scorers.items():
                bar.update(task, description=f"{col}: {spec.source} vs {spec.suspect}")
                try:
                    res = compute(scorer, pair)
                    values[col].append(res.value)
                    seconds[col] += 0 if res.cached else res.seconds
                except NotApplicable:
                    values[col].append(math.nan)
                bar.advance(task)
    return {"values": values, "seconds": seconds}


# the cheap scores (no generated test sets or references): the fast fused model re-ranks index queries
FAST_SCORES = ("closeness (no test-set gen.)", "basin", "modeldiff", "sac", "dna", "weights")

# the cheap scores fed to MGMP's classifier in the "mgmp + scores" column (every training pair needs them)
MGMP_EXTRA = {"closeness": {"generate": False}, "modeldiff": {}, "sac": {}}


def mgmp_probabilities(pool: str, specs: list[PairSpec], epochs: int, seed: int,
                       extra_scores: dict | None = None) -> list[float]:
    """P(derived) of MGMP trained with each pair's source family held out (features view, compare pairs),
    optionally with pair scores as extra classifier inputs."""
    from mgmp.bench.mgmp_table import DOMAINS, train_mgmp
    from mgmp.datamodule import ModelPoolDataModule
    from mgmp.provenance import provenance
    from mgmp.scores.features import pair_features

    _, generator, gen_kw = DOMAINS["image"]
    probs: dict[tuple[str, str], float] = {}
    for s in sorted({p.source for p in specs}):
        dm = ModelPoolDataModule(pool, source=s, view="features", holdout="family", episodes_per_epoch=100,
                                 extra_scores=extra_scores)
        dm.setup()
        module, _ = train_mgmp(dm, {"pair": "compare", "extra_scores": extra_scores}, generator, gen_kw, epochs, seed)
        module.eval()
        for p in specs:
            if p.source == s:
                pair = load_pair(f"{pool}::{s}", f"{pool}::{p.suspect}")
                extra = pair_features(pair, extra_scores) if extra_scores else None
                probs[(s, p.suspect)] = provenance(module, pair.source, pair.suspect, dm.x_eval, extra).probability
    return [probs[(p.source, p.suspect)] for p in specs]


def run(pool: str, mgmp_epochs: int = 10, seed: int = 0, methods: dict | None = None, with_mgmp: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    methods = methods or METHODS
    with PoolRegistry(pool) as reg:
        specs = pair_specs(reg, seed=seed)
    scored = score_all(pool, specs, methods)
    values = scored["values"]
    higher = {col: SCORES.get(name).higher_is_related for col, (name, _) in methods.items()}
    mgmp_cols = {"mgmp": None, "mgmp + scores": MGMP_EXTRA} if with_mgmp else {}
    for col, extra in mgmp_cols.items():
        t = time.perf_counter()
        values[col] = mgmp_probabilities(pool, specs, mgmp_epochs, seed, extra)
        scored["seconds"][col] = time.perf_counter() - t
        higher[col] = True
    cal = np.array([p.split == "calibration" for p in specs])
    related = np.array([p.related for p in specs])
    if not cal.any() or cal.all():
        raise MgmpError("the pool needs both a calibration split and an evaluation split")
    thresholds = {col: fit_threshold(np.array(v)[cal], related[cal], higher[col]) for col, v in values.items()}
    for col in mgmp_cols:
        thresholds[col] = 0.5  # MGMP decides at its own δ (its training already used the calibration families)
    decisions = {col: [decide(v, thresholds[col], higher[col]) for v in vals] for col, vals in values.items()}
    fused_models = {}
    fusions = {"fused": [c for c in values if c != "mgmp + scores"], "fused (scores only)": list(methods),
               "fused (fast scores)": [c for c in FAST_SCORES if c in methods]}
    for name, cols in fusions.items():
        if not cols:
            continue
        matrix = np.array([values[c] for c in cols]).T
        fused = FusedScore(cols, [higher[c] for c in cols]).fit(matrix[cal], related[cal])
        values[name] = fused.predict_proba(matrix).tolist()
        decisions[name] = [bool(v >= 0.5) for v in values[name]]
        negatives = np.array(values[name])[cal & ~related]
        thresholds[name], fused_models[name] = 0.5, fused.describe()
        # a query tests many candidates at once: its support threshold keeps calibration false positives <= 1 %
        fused_models[name]["support_threshold"] = float(np.quantile(negatives, 0.99, method="higher")) + 1e-9
    evaluation = ~cal
    table = accuracy_table(specs, decisions, evaluation)
    return {"pool": pool, "pairs": [asdict(p) for p in specs], "values": values, "decisions": decisions,
            "thresholds": thresholds, "higher_is_related": higher, "table": table, "fused_models": fused_models,
            "method_params": {c: [n, create_score(n, **p).params()] for c, (n, p) in methods.items()},
            "method_seconds": scored["seconds"], "n_pairs": {"calibration": int(cal.sum()), "evaluation": int(evaluation.sum())},
            "capabilities": capabilities(methods), "seconds": time.perf_counter() - t0}


def capabilities(methods: dict) -> dict[str, dict]:
    out = {c: {"handles_transfer": SCORES.get(n).handles_transfer, "measures_closeness": SCORES.get(n).measures_closeness}
           for c, (n, _) in methods.items()}
    for col in ("mgmp", "mgmp + scores", "fused", "fused (scores only)", "fused (fast scores)"):
        out[col] = {"handles_transfer": True, "measures_closeness": False}
    return out


def accuracy_table(specs: list[PairSpec], decisions: dict[str, list[bool]], mask: np.ndarray) -> dict[str, dict]:
    """{row: {method: accuracy, "n": pairs}} on the masked (evaluation) pairs, plus group and overall rows."""
    rows: dict[str, list[int]] = {}
    for i, p in enumerate(specs):
        if mask[i]:
            rows.setdefault(p.row, []).append(i)
            rows.setdefault("all lineage pairs" if p.related else "all independent pairs", []).append(i)
            rows.setdefault("overall", []).append(i)
    table = {}
    for row, idx in rows.items():
        truth = np.array([specs[i].related for i in idx])
        table[row] = {"n": len(idx)} | {c: float((np.array(d)[idx] == truth).mean()) for c, d in decisions.items()}
    return table


def markdown(result: dict) -> str:
    first = [c for c in ("mgmp", "mgmp + scores", "fused", "fused (scores only)", "fused (fast scores)")
             if c in result["decisions"]]
    cols = first + [c for c in result["decisions"] if c not in first]
    lines = ["| relation | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    order = sorted(result["table"], key=lambda r: (r.startswith("all") or r == "overall", r == "overall",
                                                  r.startswith("independent"), r))
    for r in order:
        row = result["table"][r]
        name = f"**{r}**" if r.startswith("all") or r == "overall" else r
        lines.append(f"| {name} | {row['n']} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |")
    caps = result["capabilities"]
    lines.append("| handles transfer | | " + " | ".join("yes" if caps[c]["handles_transfer"] else "no" for c in cols) + " |")
    lines.append("| measures closeness | | " + " | ".join("yes" if caps[c]["measures_closeness"] else "no" for c in cols) + " |")
    return "\n".join(lines)


def heatmap(result: dict, path: str | Path, method: str = "closeness") -> Path:
    """Source × compared-model matrix of one score on the evaluation split (the paper's Fig. 4)."""
    from mgmp.plots import score_heatmap

    pairs = [p for p in result["pairs"] if p["split"] == "eval"]
    vals = dict(zip([(p["source"], p["suspect"]) for p in result["pairs"]], result["values"][method]))
    sources = sorted({p["source"] for p in pairs})
    models = sorted({p["suspect"] for p in pairs}, key=lambda m: (not any(m.startswith(s) for s in sources), m))
    grid = np.full((len(sources), len(models)), np.nan)
    for i, s in enumerate(sources):
        for j, m in enumerate(models):
            grid[i, j] = vals.get((s, m), np.nan)
    return score_heatmap(grid, sources, models, path,
                         f"{method} of each source (rows) with each compared model (columns); blank = not compared")


def save_thresholds(pool: str, result: dict) -> None:
    """Record calibrated thresholds and the scores-only fused model in the registry for ``mgmp score``."""
    from mgmp.commands.score import FUSED_FAST_KEY, FUSED_KEY, THRESHOLDS_KEY

    out = {}
    for col, (name, params) in METHODS.items():
        if col == name and col in result["thresholds"]:
            out[name] = {"params_hash": create_score(name, **params).params_hash(), "threshold": result["thresholds"][col]}
    with PoolRegistry(pool) as reg:
        reg.set_meta(THRESHOLDS_KEY, json.dumps(out))
        for key, col in ((FUSED_KEY, "fused (scores only)"), (FUSED_FAST_KEY, "fused (fast scores)")):
            if col in result["fused_models"]:
                fused = result["fused_models"][col]
                fused["methods"] = {c: METHODS[c] for c in fused["columns"]}
                reg.set_meta(key, json.dumps(fused))

