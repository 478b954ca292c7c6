"""Side measurements of docs/results.md "Scale-out (issue 8)".

  python scripts/scale_checks.py overhead [--jobs 200] [--json J]   per-job cost of each executor (no-op jobs)
  python scripts/scale_checks.py same-set POOL POOL [...]           do builds hold the same models?
  python scripts/scale_checks.py old-initializer POOL                basin matrix with torch-only worker threads
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

from model_pool.pool import Pool

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def noop(i):
    return i


def overhead(jobs: int) -> dict:
    """Start, warm-up (one job per worker) and ms per job through ``run_dag``: independent jobs, then a chain."""
    from model_pool.dag import run_dag
    from model_pool.executors import create_executor

    out = {}
    for kind, workers in (("inline", 1), ("local", 2), ("ray", 2)):
        t0 = time.perf_counter()
        ex = create_executor("local" if kind == "inline" else kind, workers)
        start = time.perf_counter() - t0
        run_dag({("w", i): [] for i in range(workers)}, ex, lambda n: (noop, n[1]), lambda *a: None)
        warm = time.perf_counter() - t0 - start
        done = []
        t1 = time.perf_counter()
        run_dag({i: [] for i in range(jobs)}, ex, lambda n: (noop, n), lambda n, r, e: done.append(r))
        independent = time.perf_counter() - t1
        t2 = time.perf_counter()
        run_dag({i: [i - 1] if i else [] for i in range(jobs)}, ex, lambda n: (noop, n), lambda *a: None)
        chain = time.perf_counter() - t2
        ex.shutdown()
        assert sorted(done) == list(range(jobs))
        out[kind] = {"start_s": round(start, 3), "warmup_s": round(warm, 3),
                     "independent_ms_per_job": round(1e3 * independent / jobs, 3),
                     "chain_ms_per_job": round(1e3 * chain / jobs, 3)}
        print(kind, out[kind], flush=True)
    return out


def same_set(pools: list[str]) -> dict:
    """Each pool against the first: same ids, same lineage fields, how many identical sha256."""
    rows = {}
    for p in pools:
        with Pool.open(p) as pool:
            rows[p] = {r.id: r for r in pool.registry.models()}
    ref, out = rows[pools[0]], {}
    fields = ("relation", "parents", "task", "split", "dataset")
    for p in pools[1:]:
        other = rows[p]
        shared = [i for i in ref if i in other]
        out[p] = {"same_ids": set(ref) == set(other), "n": len(other),
                  "same_lineage": all(getattr(ref[i], f) == getattr(other[i], f) for i in shared for f in fields),
                  "same_sha256": f"{sum(ref[i].sha256 == other[i].sha256 for i in shared)}/{len(ref)}"}
        print(pools[0], "vs", p, out[p], flush=True)
    return out


def _torch_threads_only(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def old_initializer(pool: str) -> dict:
    """The basin score matrix with workers that only set torch's threads (before ``limit_threads``)."""
    import multiprocessing as mp

    import model_pool.executors as executors
    from mgmp.scores.matrix import score_matrix

    executors.local_processes = lambda workers: ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_torch_threads_only, initargs=(1,))
    with Pool.open(pool) as opened:
        rep = score_matrix(opened, "basin", {}, ["source", "unrelated"], executor="local", workers=2)
    out = {"computed": len(rep.computed), "seconds": rep.seconds,
           "sum_per_pair_s": round(sum(rep.seconds_per_pair.values()), 1)}
    print(out, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="check", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--jobs", type=int, default=200)
    s = sub.add_parser("same-set")
    s.add_argument("pools", nargs="+")
    b = sub.add_parser("old-initializer")
    b.add_argument("pool")
    for p in (o, s, b):
        p.add_argument("--json")
    a = ap.parse_args()
    result = {"overhead": lambda: overhead(a.jobs), "same-set": lambda: same_set(a.pools),
              "old-initializer": lambda: old_initializer(a.pool)}[a.check]()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
