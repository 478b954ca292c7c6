"""Same numbers before and after the stage-package redesign (issue 14): run the lineage benchmark (scores
without MGMP), the query calibration and the retrieval protocol on copies of one tiny lineage pool with
an old checkout (``--old``, e.g. a ``git worktree`` of 47d68ed) and with this tree, then ``mgmp
calibrate``'s functions alone on a third copy; report every value that differs.

    git worktree add /tmp/old 47d68ed && python scripts/refactor_equivalence.py --old /tmp/old --out /tmp/eq
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"closeness (no test-set gen.)": ("closeness", {"k": 20, "generate": False}), "basin": ("basin", {}),
           "modeldiff": ("modeldiff", {"n_points": 40}), "sac": ("sac", {"n_points": 20}),
           "dna": ("dna", {"n_points": 32}), "weights": ("weights", {}),
           "closeness": ("closeness", {"k": 20, "candidates": 200}), "zest": ("zest", {"n_points": 8, "n_masks": 64})}
PROTOCOL = '(("sa", "sc"), ("ft", "q8", "tr"), "sd", ("sd", "sd-ft", "ind-e1"))'
KEYS = ("thresholds", "fused_scores", "fused_fast", "query_calibration")
DUMP = ('json.dump({"table": r["table"], "thresholds": r["thresholds"], "values": r["values"], "meta": meta, '
        '"cal": c, "retrieval": {k: v for k, v in q.items() if k != "queries"}}, open(OUT, "w"), default=str)')

OLD = f"""
import json, sys
from mgmp.bench import index as bench, lineage
from model_pool.registry import PoolRegistry
POOL, OUT, METHODS = sys.argv[1], sys.argv[2], {METHODS!r}
lineage.METHODS = METHODS
r = lineage.run(POOL, methods=METHODS, with_mgmp=False)
lineage.save_thresholds(POOL, r)
p = bench.Protocol(*{PROTOCOL})
c, q = bench.calibrate(POOL, p), bench.retrieval(POOL, p, top_k=3)
with PoolRegistry(POOL) as reg:
    meta = {{k: json.loads(reg.get_meta(k)) for k in {KEYS!r}}}
{DUMP}
"""
NEW = f"""
import json, sys
from mgmp.bench import index as bench, lineage
from mgmp.index.calibrate import Protocol, calibrate_queries
from mgmp.index.query import QueryOptions
from model_pool.pool import Pool
POOL, OUT, METHODS = sys.argv[1], sys.argv[2], {METHODS!r}
with Pool.open(POOL) as pool:
    r = lineage.run(pool, methods=METHODS, with_mgmp=False)
    p = Protocol(*{PROTOCOL})
    c, q = calibrate_queries(pool, p), bench.retrieval(pool, p, QueryOptions(top_k=3))
    meta = {{k: json.loads(pool.registry.get_meta(k)) for k in {KEYS!r}}}
{DUMP}
"""
CALIBRATE = f"""
import json, sys
from mgmp.calibration.fit import calibrate
from mgmp.index.calibrate import Protocol, calibrate_queries
from model_pool.pool import Pool
POOL, OUT, METHODS = sys.argv[1], sys.argv[2], {METHODS!r}
with Pool.open(POOL) as pool:
    calibrate(pool, METHODS)
    calibrate_queries(pool, Protocol(*{PROTOCOL}))
    json.dump({{"meta": {{k: json.loads(pool.registry.get_meta(k)) for k in {KEYS!r}}}}}, open(OUT, "w"), default=str)
"""
BUILD = """
import sys
from tests.conftest import LINEAGE_PLAN
from model_pool.builder import build_pool
from model_pool.plan import parse_plan
assert build_pool(parse_plan(LINEAGE_PLAN), sys.argv[1]).ok
"""


def run(code: str, tree: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r})\n{code}", *args],
                   cwd=tree, check=True)


def differences(a, b, path: str = "") -> list[str]:
    """Every leaf where ``a`` and ``b`` differ (floats compared exactly, NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        return out + [d for k in a if k in b for d in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (u, v) in enumerate(zip(a, b)) for d in differences(u, v, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="checkout of the code before the redesign")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    a.out.mkdir(parents=True)
    run(BUILD, ROOT, str(a.out / "pool"))
    for name in ("old", "new", "calibrate"):
        shutil.copytree(a.out / "pool", a.out / name)
    run(OLD, a.old.resolve(), str(a.out / "old"), str(a.out / "old.json"))
    run(NEW, ROOT, str(a.out / "new"), str(a.out / "new.json"))
    run(CALIBRATE, ROOT, str(a.out / "calibrate"), str(a.out / "calibrate.json"))
    old, new = (json.loads((a.out / f"{n}.json").read_text()) for n in ("old", "new"))
    cal = json.loads((a.out / "calibrate.json").read_text())
    report = {"bench (old vs new)": differences(old, new), "mgmp calibrate vs new bench": differences(cal["meta"], new["meta"]),
              "pairs": len(new["values"]["weights"]), "overall": new["table"]["overall"], "retrieval": new["retrieval"]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
