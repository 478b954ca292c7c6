"""The forest at registry scale (issue 18's scale row): a copy of a calibrated lineage pool grown with cheap
near-copies (a registered model plus Gaussian noise of ``--noise`` times each weight tensor's std, registered as
its fine-tuned child in its parent's split, so that the calibration families hold near-copies too) until
``--models`` models lie outside the calibration split; then `mgmp forest` over those, timed per stage and scored
against the registry.

    python scripts/forest_scale.py runs/digits_lineage runs/forest_scale --models 1000 --json J
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mgmp.bench.forest import metrics
from mgmp.calibration.fit import CALIBRATION_SPLIT
from mgmp.calibration.store import Calibration
from mgmp.forest import fit_edges, recover, registered_edges
from model_pool.io import save_model_dir
from model_pool.pool import Pool


def grow(pool: Pool, total: int, noise: float, seed: int) -> float:
    """Add near-copies until ``total`` models lie outside the calibration split; returns the seconds it took."""
    t0 = time.perf_counter()
    reg = pool.registry
    rng = np.random.default_rng(seed)
    base = sorted(reg.ids())
    outside = sum(r.split != CALIBRATION_SPLIT for r in reg.models())
    i = 0
    while outside < total:
        parent = str(rng.choice(base))
        model, card = pool.load(parent)
        child = copy.deepcopy(model)
        g = torch.Generator().manual_seed(seed + i)
        with torch.no_grad():
            for p in child.parameters():
                if p.is_floating_point() and p.numel() > 1:
                    p.add_(torch.randn(p.shape, generator=g) * noise * p.std())
        mid = f"nc{i:04d}-{parent}"[:120]
        card = replace(card, parents=[parent], relation="finetune", recipe={"near_copy_noise": noise})
        card = save_model_dir(child, card, reg.model_dir(mid))
        split = reg.get(parent).split
        reg.add(mid, card, dataset=reg.get(parent).dataset, split=split)
        outside += split != CALIBRATION_SPLIT
        i += 1
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool")
    ap.add_argument("out")
    ap.add_argument("--models", type=int, default=1000, help="models outside the calibration split")
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not Path(args.out).exists():
        shutil.copytree(args.pool, args.out)
    with Pool.open(args.out) as pool:
        grown = grow(pool, args.models, args.noise, args.seed)
        rows = pool.registry.models()
        cal = sorted(r.id for r in rows if r.split == CALIBRATION_SPLIT)
        ev = sorted(r.id for r in rows if r.split != CALIBRATION_SPLIT)
        fused = Calibration.load(pool).fused_fast
        t0 = time.perf_counter()
        edges = fit_edges(pool, cal, fused)
        fit = time.perf_counter() - t0
        forest = recover(pool, ev, fused, edges)
        m = metrics(forest, registered_edges(pool.registry, ev))
    out = {"models": len(rows), "forest models": len(ev), "calibration models": len(cal), "grow seconds": grown, "fit seconds": fit,
           "recover seconds": forest.seconds, "fused columns": fused["columns"], "metrics": m}
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
