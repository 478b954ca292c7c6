"""Two probes behind the forest's limits (issue 18), on the models outside a pool's calibration split:
candidate recall (is a child's registered parent among its candidates, for several ``top_k`` and with each chosen
neighbour's near-copies added) and single-score parent picks (each child's candidate with the highest value of
each fast fused column, parent as source; the scores come from the pool's cache when present).

    python scripts/forest_probes.py POOL
"""
from __future__ import annotations

import argparse

import numpy as np

from mgmp.calibration.fit import CALIBRATION_SPLIT
from mgmp.calibration.fusion import score_values
from mgmp.calibration.store import Calibration
from mgmp.forest.evidence import candidate_pairs
from mgmp.scores import load_pair
from model_pool.pool import Pool


def recall_probe(pool: Pool, ids: list[str], parents: dict[str, list[str]]) -> None:
    vecs = {d: {m: np.frombuffer(b, dtype=np.float32) for _, m, _, b in pool.registry.dna(d) if m in set(ids)}
            for d in ("weights", "gram")}
    children = [c for c, ps in parents.items() if ps]
    for k, twin in ((5, None), (8, None), (10, None), (5, 0.999), (5, 0.995)):
        pairs = set()
        for v in vecs.values():
            order = [m for m in ids if m in v]
            sims = np.stack([v[m] for m in order]) @ np.stack([v[m] for m in order]).T
            for i, m in enumerate(order):
                chosen = [j for j in np.argsort(-sims[i]) if j != i][:k]
                near = {t for j in chosen for t in range(len(order)) if twin and t != i and sims[j, t] >= twin}
                pairs |= {tuple(sorted((m, order[j]))) for j in set(chosen) | near}
        found = sum(any(tuple(sorted((p, c))) in pairs for p in parents[c]) for c in children)
        print(f"top-k {k}, near-copies >= {twin}: {len(pairs)} pairs, parent among the candidates of {found} of "
              f"{len(children)} children")


def pick_probe(pool: Pool, ids: list[str], parents: dict[str, list[str]]) -> None:
    fused = Calibration.load(pool).fused_fast
    near: dict[str, set[str]] = {m: set() for m in ids}
    for a, b in candidate_pairs(pool, ids, 5):
        near[a].add(b)
        near[b].add(a)
    reachable = [c for c, ps in parents.items() if ps and near[c] & set(ps)]
    right = {col: 0 for col in fused["columns"]}
    for c in reachable:
        values = {o: score_values(load_pair(pool.ref(o), pool.ref(c), pool=pool), fused["methods"]) for o in near[c]}
        for col in right:
            best = max(near[c], key=lambda o: values[o][col] if np.isfinite(values[o][col]) else -np.inf)
            right[col] += best in parents[c]
    print(f"children whose parent is a candidate: {len(reachable)}; highest value names the parent: "
          + ", ".join(f"{col} {n}" for col, n in right.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool")
    args = ap.parse_args()
    with Pool.open(args.pool) as pool:
        ids = sorted(r.id for r in pool.registry.models() if r.split != CALIBRATION_SPLIT)
        parents = {m: [p for p in pool.registry.parents(m) if p in set(ids)] for m in ids}
        recall_probe(pool, ids, parents)
        pick_probe(pool, ids, parents)


if __name__ == "__main__":
    main()
