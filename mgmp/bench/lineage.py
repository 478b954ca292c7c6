"""``mgmp bench lineage``: Table-2-style determination accuracy per relation on the lineage pool.

Pairs: those of ``mgmp.calibration.fit.pair_specs``. Thresholds and fused models are fit by the
calibration stage on the calibration split's pairs only (and stored, as ``mgmp calibrate`` does),
then applied to the evaluation split. MGMP is trained leave-one-family-out (the evaluated source's
family never seen in training) and decides at its own δ.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mgmp.bench.mgmp_table import DOMAINS, train_mgmp
from mgmp.calibration.fit import (
    CALIBRATION_SPLIT,
    FUSED_FAST,
    FUSED_SCORES,
    FUSED_STUDENTS,
    METHODS,
    PairSpec,
    default_fusions,
    fit_fusions,
    fit_thresholds,
    higher_is_related,
    pair_specs,
    score_pairs,
    to_calibration,
)
from mgmp.calibration.fusion import FusedScore
from mgmp.calibration.store import Calibration
from mgmp.calibration.thresholds import decide
from mgmp.learned.datamodule import ModelPoolDataModule
from mgmp.learned.provenance import provenance
from mgmp.plots import score_heatmap
from mgmp.scores import SCORES, create_score, load_pair
from mgmp.scores.features import pair_features
from model_pool.errors import BadInput
from model_pool.pool import Pool

# the cheap scores fed to MGMP's classifier in the "mgmp + scores" column (every training pair needs them)
MGMP_EXTRA = {"closeness": {"generate": False}, "modeldiff": {}, "sac": {}}


def mgmp_probabilities(pool: Pool, specs: list[PairSpec], epochs: int, seed: int,
                       extra_scores: dict | None = None, episodes: int = 100) -> list[float]:
    """P(derived) of MGMP trained with each pair's source family held out (features view, compare pairs),
    optionally with pair scores as extra classifier inputs."""
    _, generator, gen_kw = DOMAINS["image"]
    probs: dict[tuple[str, str], float] = {}
    for s in sorted({p.source for p in specs}):
        dm = ModelPoolDataModule(str(pool.root), source=s, view="features", holdout="family", episodes_per_epoch=episodes,
                                 extra_scores=extra_scores)
        dm.setup()
        module, _ = train_mgmp(dm, {"pair": "compare", "extra_scores": extra_scores}, generator, gen_kw, epochs, seed)
        module.eval()
        for p in specs:
            if p.source == s:
                pair = load_pair(pool.ref(s), pool.ref(p.suspect), pool=pool)
                extra = pair_features(pair, extra_scores) if extra_scores else None
                probs[(s, p.suspect)] = provenance(module, pair.source, pair.suspect, dm.x_eval, extra).probability
    return [probs[(p.source, p.suspect)] for p in specs]


def run(pool: Pool, mgmp_epochs: int = 10, seed: int = 0, methods: dict | None = None,
        with_mgmp: bool = True, mgmp_episodes: int = 100, sources: list[str] | None = None) -> dict[str, Any]:
    """Score every pair, calibrate on the calibration split (stored in the pool), report the evaluation split;
    ``sources``: only the pairs of these sources (the heavy scores on a few families of a large pool)."""
    t0 = time.perf_counter()
    methods = methods or METHODS
    specs = pair_specs(pool.registry, seed=seed)
    if sources:
        unknown = sorted(set(sources) - {p.source for p in specs})
        if unknown:
            raise BadInput(f"--sources: {unknown[0]!r} is the source of no pair; sources: "
                           f"{', '.join(sorted({p.source for p in specs}))}")
        specs = [p for p in specs if p.source in sources]
    scored = score_pairs(pool, specs, methods)
    values = scored["values"]
    higher = higher_is_related(methods)
    mgmp_cols = {"mgmp": None, "mgmp + scores": MGMP_EXTRA} if with_mgmp else {}
    for col, extra in mgmp_cols.items():
        t = time.perf_counter()
        values[col] = mgmp_probabilities(pool, specs, mgmp_epochs, seed, extra, mgmp_episodes)
        scored["seconds"][col] = time.perf_counter() - t
        higher[col] = True
    cal = np.array([p.split == CALIBRATION_SPLIT for p in specs])
    related = np.array([p.related for p in specs])
    if not cal.any() or cal.all():
        raise BadInput("the pool needs both a calibration split and an evaluation split")
    thresholds = fit_thresholds(values, higher, related, cal)
    for col in mgmp_cols:
        thresholds[col] = 0.5  # MGMP decides at its own δ (its training already used the calibration families)
    decisions = {col: [decide(v, thresholds[col], higher[col]) for v in vals] for col, vals in values.items()}
    fusions = {"fused": [c for c in values if c != "mgmp + scores"], **default_fusions(methods)}
    fused_models = fit_fusions(values, higher, related, cal, fusions)
    for name, described in fused_models.items():
        matrix = np.array([values[c] for c in described["columns"]]).T
        values[name] = FusedScore.from_dict(described).predict_proba(matrix).tolist()
        decisions[name] = [bool(v >= 0.5) for v in values[name]]
        thresholds[name] = 0.5
    to_calibration(methods, thresholds, fused_models).save(pool, replace_scores=True)
    table = accuracy_table(specs, decisions, ~cal)
    return {"pool": str(pool.root), "pairs": [asdict(p) for p in specs], "values": values, "decisions": decisions,
            "thresholds": thresholds, "higher_is_related": higher, "table": table, "fused_models": fused_models,
            "method_params": {c: [n, create_score(n, **p).params()] for c, (n, p) in methods.items()},
            "method_seconds": scored["seconds"], "n_pairs": {"calibration": int(cal.sum()), "evaluation": int((~cal).sum())},
            "capabilities": capabilities(methods), "seconds": time.perf_counter() - t0}


def transferred(result: dict[str, Any], other: Calibration, methods: dict) -> dict[str, dict]:
    """The evaluation table under another pool's stored calibration, applied unchanged (what a user without a
    calibration pool of their own domain gets): its thresholds for the columns it calibrated with the same
    parameters, its fused models where all their columns were scored."""
    specs = [PairSpec(**p) for p in result["pairs"]]
    values, higher = result["values"], result["higher_is_related"]
    decisions = {}
    for col, (name, params) in methods.items():
        threshold = other.threshold(create_score(name, **params)) if col == name else None
        if threshold is not None and col in values:
            decisions[col] = [decide(v, threshold, higher[col]) for v in values[col]]
    for label, described in ((FUSED_SCORES, other.fused), (FUSED_FAST, other.fused_fast),
                             (FUSED_STUDENTS, other.fused_students)):
        if described and all(c in values for c in described["columns"]):
            matrix = np.array([values[c] for c in described["columns"]]).T
            decisions[label] = [bool(v >= 0.5) for v in FusedScore.from_dict(described).predict_proba(matrix)]
    return accuracy_table(specs, decisions, np.array([p.split != CALIBRATION_SPLIT for p in specs]))


def capabilities(methods: dict) -> dict[str, dict]:
    out = {c: {"handles_transfer": SCORES.get(n).handles_transfer, "measures_closeness": SCORES.get(n).measures_closeness}
           for c, (n, _) in methods.items()}
    for col in ("mgmp", "mgmp + scores", "fused", FUSED_SCORES, FUSED_FAST, FUSED_STUDENTS):
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


STUDENT_ROW = re.compile(r"^(extract|distill) \((.+?), (\d+) queries(, labels|, probabilities)?\)$")


def budget_curve(table: dict[str, dict]) -> dict[str, dict[int, dict[str, float]]]:
    """{attack: {budget: {method: detection rate}}} from the evaluation rows of students with a query budget
    (``extract (shapes-textures, 1000 queries, labels)``); controls are left out."""
    curve: dict[str, dict[int, dict[str, float]]] = {}
    for row, values in table.items():
        if m := STUDENT_ROW.match(row):
            attack = f"{m[1]} ({m[2]}{m[4] or ''})"
            curve.setdefault(attack, {})[int(m[3])] = {c: v for c, v in values.items() if c != "n"}
    return curve


def table_markdown(table: dict[str, dict], columns) -> tuple[str, list[str]]:
    """An accuracy table (rows: relations, then groups and overall) as markdown, and its column order."""
    first = [c for c in ("mgmp", "mgmp + scores", "fused", FUSED_SCORES, FUSED_FAST, FUSED_STUDENTS) if c in columns]
    cols = first + [c for c in columns if c not in first]
    lines = ["| relation | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    order = sorted(table, key=lambda r: (r.startswith("all") or r == "overall", r == "overall",
                                         r.startswith("independent"), r))
    for r in order:
        row = table[r]
        name = f"**{r}**" if r.startswith("all") or r == "overall" else r
        lines.append(f"| {name} | {row['n']} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |")
    return "\n".join(lines), cols


def markdown(result: dict) -> str:
    text, cols = table_markdown(result["table"], list(result["decisions"]))
    lines = [text]
    caps = result["capabilities"]
    lines.append("| handles transfer | | " + " | ".join("yes" if caps[c]["handles_transfer"] else "no" for c in cols) + " |")
    lines.append("| measures closeness | | " + " | ".join("yes" if caps[c]["measures_closeness"] else "no" for c in cols) + " |")
    return "\n".join(lines)


def heatmap(result: dict, path: str | Path, method: str = "closeness") -> Path:
    """Source × compared-model matrix of one score on the evaluation split (the paper's Fig. 4)."""
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
