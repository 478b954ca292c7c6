"""How much of its source each model of a lineage pool copies: test accuracy, and top-1 agreement with the source
(its `tags.source`, else the first source) on the pool's test data; a student that agrees with its source no more
than independent models do carries no behavioural trace for output scores to find.

    python scripts/student_fidelity.py /work/pools/shapes_lineage --dataset shapes
"""
from __future__ import annotations

import argparse
import json

from model_pool.data import load_dataset
from model_pool.pool import Pool
from model_pool.train import predict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pool")
    p.add_argument("--dataset", default="shapes")
    args = p.parse_args()
    data = load_dataset(args.dataset)
    with Pool.open(args.pool) as pool:
        rows = pool.registry.models()
        sources = sorted(r.id for r in rows if r.tags.get("role") == "source")
        top1 = {s: predict(pool.load(s)[0], data.x_test).argmax(1) for s in sources}
        for r in rows:
            if r.id in sources or r.relation == "transfer":
                continue
            src = r.tags.get("source", sources[0])
            pred = predict(pool.load(r.id)[0], data.x_test).argmax(1)
            print(json.dumps({"model": r.id, "source": src, "test_acc": round(float((pred == data.y_test).float().mean()), 3),
                              "agreement": round(float((pred == top1[src]).float().mean()), 3)}), flush=True)


if __name__ == "__main__":
    main()
