"""A score's variant against its defaults on the lineage benchmark's pairs: same decisions? (issue 19)

Every pair of ``mgmp bench lineage`` is scored with METHOD's defaults and with the variant's parameters
(e.g. Zest's adaptive L, ``tolerance=0.001``, or reduced precision, ``precision=bfloat16``); thresholds
are fit on the calibration split for each, and the evaluation split's decisions are compared, with the
values' relative difference and each variant's seconds of fresh computation. Scores land in the pool's
cache (this script stores no calibration).

    python scripts/score_variants.py runs/pools/digits_lineage zest tolerance=0.001 --json zest_adaptive.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import yaml

from mgmp.calibration.fit import CALIBRATION_SPLIT, pair_specs
from mgmp.calibration.thresholds import decide, fit_threshold
from mgmp.scores import compute, create_score, load_pair
from model_pool.errors import NotApplicable
from model_pool.pool import Pool


def score_all(pool: Pool, specs, method) -> dict:
    out = {"value": [], "extra": [], "seconds": 0.0}
    for spec in specs:
        pair = load_pair(pool.ref(spec.source), pool.ref(spec.suspect), pool=pool)
        try:
            res = compute(method, pair)
        except NotApplicable:
            res = None
        out["value"].append(np.nan if res is None else res.value)
        out["extra"].append({} if res is None else res.extra)
        out["seconds"] += 0.0 if res is None or res.cached else res.seconds
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool")
    ap.add_argument("method")
    ap.add_argument("params", nargs="+", metavar="KEY=VALUE", help="the variant's parameters")
    ap.add_argument("--json")
    args = ap.parse_args()
    variant = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in args.params)}
    t0 = time.perf_counter()
    with Pool.open(args.pool) as pool:
        specs = pair_specs(pool.registry)
        methods = {"default": create_score(args.method), "variant": create_score(args.method, **variant)}
        scored = {name: score_all(pool, specs, m) for name, m in methods.items()}
    related = np.array([p.related for p in specs])
    cal = np.array([p.split == CALIBRATION_SPLIT for p in specs])
    ok = ~np.isnan(scored["default"]["value"]) & ~np.isnan(scored["variant"]["value"])
    higher = methods["default"].higher_is_related
    rows, decisions = {}, {}
    for name, r in scored.items():
        v = np.array(r["value"])
        threshold = fit_threshold(v[cal & ok], related[cal & ok], higher)
        decisions[name] = np.array([decide(x, threshold, higher) for x in v])
        rows[name] = {"params": methods[name].params(), "threshold": threshold, "seconds": r["seconds"],
                      "eval_accuracy": float((decisions[name] == related)[~cal & ok].mean())}
        if args.method == "zest":
            rows[name]["mean_masks_used"] = float(np.mean([e["masks_used"] for e, good in zip(r["extra"], ok) if good]))
    a, b = np.array(scored["default"]["value"])[ok], np.array(scored["variant"]["value"])[ok]
    rel = np.abs(b - a) / np.maximum(np.abs(a), 1e-12)
    summary = {"pool": args.pool, "method": args.method, "variant": variant, "pairs": int(ok.sum()),
               "evaluation_pairs": int((~cal & ok).sum()),
               "relative_value_difference": {"mean": float(rel.mean()), "median": float(np.median(rel)),
                                             "p95": float(np.quantile(rel, 0.95)), "max": float(rel.max())},
               "evaluation_decisions_changed": int((decisions["default"] != decisions["variant"])[~cal & ok].sum()),
               "rows": rows, "seconds": time.perf_counter() - t0}
    print(json.dumps(summary, indent=2, default=str))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2, default=str)


if __name__ == "__main__":
    main()
