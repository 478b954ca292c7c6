"""``mgmp bench index``: ancestor retrieval on the lineage pool, and FAISS at registry scale.

Retrieval: an index of the pool without a held-out set — derived models whose parent stays indexed
(one and several generations deep) and, as "unrelated" suspects, one source's whole family plus
some independents (no ancestor indexed: the answer must be "none"). Metrics with torchmetrics:
hit rate@1/@5 and MRR of the true parent among the ranked hits, plus the verdicts. The query's
support threshold and ancestor-preference tolerance are chosen on the same protocol over the
calibration families (``calibrate``) and stored in the pool for ``mgmp query``.

Scale: simulated DNA, families of perturbed unit vectors whose within- and between-family cosine
similarity match the real pool's DNA; recall@10 of HNSW and IVF-PQ against exact search, p50/p95
single-query latency, batch throughput, build time and index memory.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import torch
from rich.progress import track
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR

from mgmp.index.dna import INDEX_DNA
from mgmp.index.query import QUERY_KEY, candidates, decide
from mgmp.index.store import build_indexes, create_index, set_search_params
from model_pool.errors import MgmpError
from model_pool.registry import PoolRegistry


@dataclass(frozen=True)
class Protocol:
    """Held-out ``{source}-{variant}`` derived models (parents indexed) and unrelated suspects: a whole
    family and some independents, none of them indexed (the answer must be "none")."""

    sources: tuple[str, ...]
    variants: tuple[str, ...]
    unrelated_family: str
    unrelated: tuple[str, ...]


VARIANTS = ("ft-heavy", "ft-vheavy", "prune50", "int4", "adv", "distill", "lora", "tr5", "tr-prune", "extract",
            "gen3-int8", "gen2-prune")  # the last two are later generations (their parents gen2-ft, tr10 stay indexed)
EVALUATION = Protocol(("src-a", "src-b"), VARIANTS, "src-m",
                      ("src-m", "src-m-ft-heavy", "src-m-tr5", "src-m-distill", "src-m-extract", "src-m-int8",
                       "ind-small_cnn-s43", "ind-mlp-s43"))
CALIBRATION = Protocol(("cal-a", "cal-m"), VARIANTS, "cal-n",
                       ("cal-n", "cal-n-ft-heavy", "cal-n-tr5", "cal-n-distill", "cal-n-extract", "cal-n-int8",
                        "ind-small_cnn-cal-s53", "ind-mlp-cal-s53"))
BENCH_TAG = "bench-heldout"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # support thresholds on the fused P tried on calibration queries
EPSILONS = (0.0, 0.02, 0.05, 0.1, 0.2)  # ancestor-preference tolerances tried


def collect(pool: str, protocol: Protocol = EVALUATION, top_k: int = 5, kind: str = "flat", rerank: bool = True,
            min_similarity: float = 0.99, dna: tuple[str, ...] = INDEX_DNA) -> list[dict]:
    """Index the pool without the protocol's suspects (apart from its own indexes) and gather every
    suspect's scored candidates, with its true parent and chain (None for unrelated suspects)."""
    with PoolRegistry(pool) as reg:
        held = [f"{s}-{v}" for s in protocol.sources for v in protocol.variants if reg.has(f"{s}-{v}")]
        unrelated = [m for m in protocol.unrelated if reg.has(m)]
        family = protocol.unrelated_family
        excluded = set(held) | set(unrelated) | {family} | set(reg.descendants(family))
        parents = {m: reg.parents(m)[0] for m in held}
        true_chain = {m: reg.chain(parents[m]) for m in held}
    if not held:
        raise MgmpError(f"{pool}: none of the held-out models of the lineage benchmark exist (not a digits_lineage pool)")
    build_indexes(pool, kind, dna, exclude=excluded, rebuild=True, tag=BENCH_TAG)
    return [{"suspect": m, "expected": parents.get(m), "true_chain": true_chain.get(m),
             "later_generation": m in parents and parents[m] not in protocol.sources,
             "candidates": candidates(pool, f"{pool}::{m}", top_k, kind, dna, rerank=rerank, exclude=excluded,
                                      tag=BENCH_TAG, min_similarity=min_similarity)}
            for m in track(held + unrelated, description="querying held-out suspects", transient=True)]


def evaluate(collected: list[dict], support_threshold: float | None = None, prefer_ancestors: float | None = None,
             top_k: int = 5) -> dict[str, Any]:
    """Verdicts at one support threshold and tolerance; hit rate@1/@5 and MRR (torchmetrics) of the true
    parent among the ranked hits, top-1 parent (the verdict), chains of later generations, "none" rate."""
    rows = []
    for c in collected:
        res = decide(c["candidates"], support_threshold, prefer_ancestors, top_k)
        rows.append({"suspect": c["suspect"], "expected": c["expected"], "parent": res.parent,
                     "hits": [h.model_id for h in res.hits], "supported": [h.model_id for h in res.hits if h.supported],
                     "chain": res.chain, "true_chain": c["true_chain"], "later_generation": c["later_generation"],
                     "support": res.support,
                     "hit_details": [[h.model_id, h.similarities, h.probability, h.closeness] for h in res.hits]})
    derived = [r for r in rows if r["expected"]]
    preds, target, indexes = [], [], []
    for q, r in enumerate(derived):
        for rank, h in enumerate(r["hits"]):
            preds.append(1.0 / (rank + 1))
            target.append(h == r["expected"])
            indexes.append(q)
    p, t, i = torch.tensor(preds), torch.tensor(target), torch.tensor(indexes)
    multi = [r for r in derived if r["later_generation"]]
    return {
        "held_out": len(derived), "unrelated": len(rows) - len(derived),
        "top1_parent": float(np.mean([r["parent"] == r["expected"] for r in derived])),
        "hit_rate@1": float(RetrievalHitRate(top_k=1)(p, t, indexes=i)),
        "hit_rate@5": float(RetrievalHitRate(top_k=5)(p, t, indexes=i)),
        "mrr": float(RetrievalMRR()(p, t, indexes=i)),
        "multi_generation_chain_correct": float(np.mean([r["chain"] == r["true_chain"] for r in multi])) if multi else None,
        "unrelated_none": float(np.mean([r["parent"] is None for r in rows if not r["expected"]])),
        "queries": rows,
    }


def retrieval(pool: str, protocol: Protocol = EVALUATION, top_k: int = 5, kind: str = "flat", rerank: bool = True,
              dna: tuple[str, ...] = INDEX_DNA, support_threshold: float | None = None,
              prefer_ancestors: float | None = None, min_similarity: float = 0.99) -> dict[str, Any]:
    """``evaluate`` on the protocol's queries (default threshold and tolerance: the pool's calibration)."""
    result = evaluate(collect(pool, protocol, top_k, kind, rerank, min_similarity, dna), support_threshold,
                      prefer_ancestors, top_k)
    return {"kind": kind, "dna": list(dna), "rerank": rerank, **result}


def calibrate(pool: str, protocol: Protocol = CALIBRATION, kind: str = "flat", save: bool = True) -> dict[str, Any]:
    """The support threshold and ancestor-preference tolerance with the best balanced verdict accuracy
    (mean of top-1 parent and "none" rates) on the calibration queries; stored for ``mgmp query``."""
    from mgmp.commands.score import FUSED_FAST_KEY, stored_fused

    if stored_fused(pool, FUSED_FAST_KEY) is None:
        raise MgmpError(f"{pool}: no calibrated fused model; run `mgmp bench lineage --pool {pool}` first")
    collected = collect(pool, protocol, kind=kind)
    grid = {}
    for thr in THRESHOLDS:
        for eps in EPSILONS:
            r = evaluate(collected, thr, eps)
            grid[(thr, eps)] = {"top1_parent": r["top1_parent"], "unrelated_none": r["unrelated_none"],
                                "balanced": (r["top1_parent"] + r["unrelated_none"]) / 2}
    thr, eps = max(grid, key=lambda k: (grid[k]["balanced"], -k[0], -k[1]))  # ties: the lowest threshold and tolerance
    chosen = {"support_threshold": thr, "prefer_ancestors": eps, **grid[(thr, eps)], "sources": list(protocol.sources),
              "unrelated": list(protocol.unrelated)}
    if save:
        with PoolRegistry(pool) as reg:
            reg.set_meta(QUERY_KEY, json.dumps(chosen))
    return {"chosen": chosen, "grid": [{"support_threshold": t, "prefer_ancestors": e, **v} for (t, e), v in grid.items()]}


# -- scale -----------------------------------------------------------------------------------
def real_spread(pool: str, dna: str = "gram") -> dict[str, float]:
    """Mean cosine of members to their family mean, and between family means, of the pool's DNA."""
    with PoolRegistry(pool) as reg:
        vec = {mid: np.frombuffer(v, dtype=np.float32) for _, mid, _, v in reg.dna(dna)}
        families = [[m for m in fam if m in vec] for fam in (([r] + d) for r, d in reg.families().items())]
    families = [f for f in families if len(f) >= 2]
    if not vec or len(families) < 2:
        raise MgmpError(f"{pool}: needs DNA of at least two families; run `mgmp index build {pool}` first")
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


def markdown(result: dict) -> str:
    lines = []
    if result.get("calibration"):
        c = result["calibration"]["chosen"]
        cells = {(g["support_threshold"], g["prefer_ancestors"]): g for g in result["calibration"]["grid"]}
        eps = sorted({e for _, e in cells})
        lines += [f"Calibration queries ({', '.join(c['sources'])} held out; unrelated: {', '.join(c['unrelated'])}): "
                  f"top-1 parent / 'none' rate per support threshold (rows) and ancestor-preference tolerance (columns); "
                  f"chosen: threshold {c['support_threshold']}, tolerance {c['prefer_ancestors']} "
                  f"(top-1 parent {c['top1_parent']:.2f}, 'none' {c['unrelated_none']:.2f}).", "",
                  "| threshold | " + " | ".join(f"ε {e}" for e in eps) + " |", "|---|" + "---|" * len(eps)]
        for t in sorted({t for t, _ in cells}):
            lines.append(f"| {t} | " + " | ".join(f"{cells[(t, e)]['top1_parent']:.2f} / {cells[(t, e)]['unrelated_none']:.2f}"
                                                   for e in eps) + " |")
        lines.append("")
    for r in result.get("retrieval", []):
        chain = r["multi_generation_chain_correct"]
        lines.append(f"- {r['kind']} {' + '.join(r.get('dna', ['gram']))} indexes, "
                     f"{'re-ranked by pair scores' if r['rerank'] else 'DNA only'}: "
                     f"top-1 parent {r['top1_parent']:.2f}, hit rate@5 {r['hit_rate@5']:.2f}, MRR {r['mrr']:.2f} "
                     f"({r['held_out']} held-out derived models); later generations' chain correct "
                     f"{'-' if chain is None else f'{chain:.2f}'}; unrelated answered 'none' {r['unrelated_none']:.2f} "
                     f"({r['unrelated']} suspects); support: {r['queries'][0]['support']}")
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
