"""Top-1 parent of the ancestor query on a pool's evaluation protocol, ranked as `mgmp query` does and with the
parent chosen by the forest's edge model (`mgmp query --parent edges`); the pool needs a fast fused model and the
edge model `mgmp forest` keeps (issue 18). ``--calibrate``: first choose the query's support threshold and
ancestor tolerance on the calibration split (as `mgmp bench index` does; stored in the pool).

    python scripts/edge_parent_queries.py POOL [--calibrate] [--json J]
"""
from __future__ import annotations

import argparse
import json
import time

from mgmp.bench.index import edge_parents, retrieval
from mgmp.forest.parent import edge_model
from mgmp.index.calibrate import calibrate_queries, protocol_for
from mgmp.index.query import QueryOptions
from model_pool.pool import Pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool")
    ap.add_argument("--json")
    ap.add_argument("--calibrate", action="store_true", help="first calibrate the query on the calibration split")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with Pool.open(args.pool) as pool:
        model = edge_model(pool)
        if args.calibrate:
            calibrate_queries(pool, protocol_for(pool, "calibration"))
        ranked = retrieval(pool, protocol_for(pool, "eval"), QueryOptions(top_k=5))
        edges = edge_parents(pool, ranked, model)
    out = {"ranked": {k: v for k, v in ranked.items() if k != "queries"}, "edges": edges,
           "queries": ranked["queries"], "seconds": time.perf_counter() - t0}
    print(json.dumps({"ranked top-1 parent": ranked["top1_parent"], "edge top-1 parent": edges["top1_parent"],
                      "hit_rate@5": ranked["hit_rate@5"], "none": ranked["unrelated_none"],
                      "held_out": edges["held_out"], "seconds": round(out["seconds"])}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
