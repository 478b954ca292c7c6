"""``mgmp bench index``: ancestor retrieval on the lineage pool, and FAISS at registry scale.

Retrieval: the query protocol of ``mgmp.index.calibrate`` on the evaluation families (held-out derived
models whose parent stays indexed, and unrelated suspects whose answer must be "none"), with the
pool's query calibration (chosen by ``mgmp calibrate`` on the calibration families).

Scale: simulated DNA, families of perturbed unit vectors whose within- and between-family cosine
similarity match the real pool's DNA; recall@10 of HNSW and IVF-PQ against exact search, p50/p95
single-query latency, batch throughput, build time and index memory.
"""
from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np
from rich.progress import track

from mgmp.index.calibrate import EVALUATION, Protocol, collect, evaluate, parent_checker
from mgmp.index.query import QueryOptions
from mgmp.index.store import create_index, set_search_params
from model_pool.errors import BadInput
from model_pool.pool import Pool


def retrieval(pool: Pool, protocol: Protocol = EVALUATION, options: QueryOptions = QueryOptions()) -> dict[str, Any]:
    """``evaluate`` on the protocol's queries (default threshold and tolerance: the pool's calibration), each
    parent checked against its own starting point as ``mgmp query`` does."""
    collected = collect(pool, protocol, options)
    result = evaluate(collected, options.support_threshold, options.prefer_ancestors, options.top_k,
                      check=parent_checker(pool, collected) if options.rerank else None)
    return {"kind": options.kind, "dna": list(options.dna), "rerank": options.rerank,
            "protocol": "one at a time" if protocol.one_at_a_time else "held-out set", **result}


def edge_parents(pool: Pool, result: dict, model) -> dict[str, Any]:
    """Top-1 parent of ``retrieval``'s derived suspects when their supported hits are ordered by the forest's
    edge model (``mgmp query --parent edges``) instead of the query's ranking."""
    from mgmp.forest.parent import parent_probabilities  # the edge model's imports cost seconds: only here

    derived = [r for r in result["queries"] if r["expected"]]
    for r in track(derived, description="P(parent) of the supported hits", transient=True):
        if r["supported"]:
            p = parent_probabilities(pool, pool.ref(r["suspect"]), r["supported"], model)
            r["edge_parent"] = max(r["supported"], key=p.get)
        else:
            r["edge_parent"] = None
    return {"top1_parent": float(np.mean([r["edge_parent"] == r["expected"] for r in derived])),
            "ranked_top1_parent": result["ranked_top1_parent"], "held_out": len(derived)}


# -- scale -----------------------------------------------------------------------------------
def real_spread(pool: Pool, dna: str = "gram") -> dict[str, float]:
    """Mean cosine of members to their family mean, and between family means, of the pool's DNA."""
    reg = pool.registry
    vec = {mid: np.frombuffer(v, dtype=np.float32) for _, mid, _, v in reg.dna(dna)}
    families = [[m for m in fam if m in vec] for fam in (([r] + d) for r, d in reg.families().items())]
    families = [f for f in families if len(f) >= 2]
    if not vec or len(families) < 2:
        raise BadInput(f"{pool.root}: needs DNA of at least two families; run `mgmp index build {pool.root}` first")
    means = []
    within = []
    for fam in families:
        x = np.stack([vec[m] for m in fam])
        c = x.mean(0) / np.linalg.norm(x.mean(0))
        within += list(x @ c)
        means.append(c)
    means = np.stack(means)
    between = means @ means.T
    return {"dim": int(len(next(iter(vec.values())))), "within": float(np.mean(within)),
            "between": float(between[np.triu_indices(len(means), 1)].mean()), "families": len(families)}


def simulate(n: int, dim: int, within: float, between: float, family_size: int = 30, seed: int = 0,
             n_queries: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors in families (and ``n_queries`` new family members) with the given mean cosines."""
    rng = np.random.default_rng(seed)
    sigma_b = np.sqrt(max(1 / max(between, 1e-6) - 1, 0) / dim)
    sigma_w = np.sqrt(max(1 / max(within, 1e-6) ** 2 - 1, 0) / dim)
    g = rng.standard_normal(dim).astype(np.float32)
    g /= np.linalg.norm(g)
    n_fam = max(1, n // family_size)
    centers = g + sigma_b * rng.standard_normal((n_fam, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    def members(count):
        out = np.empty((count, dim), dtype=np.float32)
        for s in range(0, count, 100_000):
            m = min(100_000, count - s)
            x = centers[rng.integers(n_fam, size=m)] + sigma_w * rng.standard_normal((m, dim)).astype(np.float32)
            out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return members(n), members(n_queries)


# search-time operating points per index kind: HNSW efSearch; IVF-PQ (nprobe, k_factor)
OPERATING_POINTS = {"flat": [{}], "hnsw": [{"ef_search": e} for e in (64, 128, 256, 512, 1024)],
                    "ivfpq": [{"nprobe": p, "k_factor": k} for p, k in ((16, 8), (64, 8), (64, 32))]}


def scale(sizes: list[int], dim: int, within: float, between: float, kinds=("flat", "hnsw", "ivfpq"),
          n_queries: int = 1000, threads: int | None = None) -> list[dict]:
    if threads:
        faiss.omp_set_num_threads(threads)
    rows = []
    for n in sizes:
        base, queries = simulate(n, dim, within, between, n_queries=n_queries)
        exact = None
        for kind in kinds:
            t = time.perf_counter()
            index = create_index(kind, base, None, dim)
            build = time.perf_counter() - t
            memory = faiss.serialize_index(index).nbytes / 2**20
            for point in OPERATING_POINTS[kind]:
                set_search_params(index, kind, **point)
                lat = []
                for q in queries[:200]:
                    t = time.perf_counter()
                    index.search(q[None], 10)
                    lat.append(time.perf_counter() - t)
                t = time.perf_counter()
                _, ids = index.search(queries, 10)
                batch = time.perf_counter() - t
                if kind == "flat":
                    exact = ids
                recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]))
                rows.append({"n": n, "kind": kind, "params": point, "recall@10": recall, "build_s": build,
                             "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p95_ms": 1e3 * float(np.percentile(lat, 95)),
                             "batch_qps": n_queries / batch, "memory_mb": memory})
            del index
    return rows


def _students(queries: list[dict]) -> str:
    """What the student check answered: right parents, and wrong ones (a parent for an unrelated suspect counts)."""
    answered = [q for q in queries if (q.get("parent_check") or {}).get("relation") == "student"]
    if not answered:
        return ""
    right = sum(q["parent"] == q["expected"] for q in answered)
    return f"; the student check answered {len(answered)} ({right} right parents)"


def markdown(result: dict) -> str:
    lines = []
    if result.get("calibration"):
        c = result["calibration"]["chosen"]
        cells = {(g["support_threshold"], g["prefer_ancestors"]): g for g in result["calibration"]["grid"]
                 if g.get("student_threshold") == c.get("student_threshold")}
        student = (f", student threshold {c['student_threshold']} (the grid below at it)"
                   if c.get("student_threshold") is not None else "")
        eps = sorted({e for _, e in cells})
        lines += [f"Calibration queries ({', '.join(c['sources'])} held out; unrelated: {', '.join(c['unrelated'])}): "
                  f"top-1 parent / 'none' rate per support threshold (rows) and ancestor-preference tolerance (columns); "
                  f"chosen: threshold {c['support_threshold']}, tolerance {c['prefer_ancestors']}{student} "
                  f"(top-1 parent {c['top1_parent']:.2f}, 'none' {c['unrelated_none']:.2f}).", "",
                  "| threshold | " + " | ".join(f"ε {e}" for e in eps) + " |", "|---|" + "---|" * len(eps)]
        for t in sorted({t for t, _ in cells}):
            lines.append(f"| {t} | " + " | ".join(f"{cells[(t, e)]['top1_parent']:.2f} / {cells[(t, e)]['unrelated_none']:.2f}"
                                                   for e in eps) + " |")
        lines.append("")
    for r in result.get("retrieval", []):
        chain = r["multi_generation_chain_correct"]
        lines.append(f"- {r['kind']} {' + '.join(r.get('dna', ['gram']))} indexes, {r.get('protocol', 'held-out set')}, "
                     f"{'re-ranked by pair scores' if r['rerank'] else 'DNA only'}: "
                     f"top-1 parent {r['top1_parent']:.2f} (ranked, before checking the parent against its own "
                     f"starting point: {r.get('ranked_top1_parent', r['top1_parent']):.2f}), hit rate@5 {r['hit_rate@5']:.2f}, MRR {r['mrr']:.2f} "
                     f"({r['held_out']} held-out derived models; without its {r.get('students', 0)} students "
                     f"{r.get('top1_parent_no_students', float('nan')):.2f}); later generations' chain correct "
                     f"{'-' if chain is None else f'{chain:.2f}'}; unrelated answered 'none' {r['unrelated_none']:.2f} "
                     f"({r['unrelated']} suspects); support: {r['queries'][0]['support']}{_students(r['queries'])}")
    if e := result.get("edge_parent"):
        lines.append(f"- the same queries, parent chosen among the supported hits by the forest's edge model "
                     f"(`mgmp query --parent edges`): top-1 parent {e['top1_parent']:.2f} (ranked: "
                     f"{e['ranked_top1_parent']:.2f}; {e['held_out']} held-out derived models)")
    if result.get("scale"):
        s = result["spread"]
        lines += ["", f"Simulated DNA: dim {s['dim']}, within-family cosine {s['within']:.4f}, between-family "
                      f"{s['between']:.4f} (fit to {s['families']} real families).", "",
                  "| N | index | search params | recall@10 vs exact | p50 ms | p95 ms | batch queries/s | build s | memory MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in result["scale"]:
            rec = "exact" if r["kind"] == "flat" else f"{r['recall@10']:.3f}"
            params = ", ".join(f"{k} {v}" for k, v in r.get("params", {}).items()) or "-"
            lines.append(f"| {r['n']:.0e} | {r['kind']} | {params} | {rec} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                         f"{r['batch_qps']:.0f} | {r['build_s']:.1f} | {r['memory_mb']:.0f} |")
    return "\n".join(lines)
