"""``mgmp bench forest``: recover the evaluation families' lineage forest with the pool's edges hidden (SPEC §12).

The edge model is fit on the calibration families' registered edges (the shipped one where the pool has fewer than
two such families: :func:`~mgmp.forest.recover.edge_model_for`); the forest is recovered over every model
outside the calibration split; the numbers compare its edges with the registry's. Rows: mgmp (the learned edge
model over the fused scores, signatures and nearness) and MoTHer's rule (weights only) on the same models.
Nothing is stored in the pool's calibration.
"""
from __future__ import annotations

import time
from typing import Any

from mgmp.calibration.fit import CALIBRATION_SPLIT
from mgmp.forest import Forest, mother_forest, recover, registered_edges
from mgmp.forest.recover import edge_model_for
from model_pool.pool import Pool

ROWS = ("mgmp (learned edges)", "MoTHer (weights only)")


def metrics(forest: Forest, true_edges: set[tuple[str, str]]) -> dict[str, float]:
    """Directed-edge precision / recall / F1, the share of recovered edges that are true edges in either
    direction (undirected accuracy), root recall (true roots recovered as roots) and precision, the share of
    recovered edges that make a sibling the parent of its sibling (issue 21's question), the share of true merges
    (two registered parents) recovered with exactly their parents, seconds per model."""
    found = {(e.parent, e.child) for e in forest.edges}
    right = len(found & true_edges)
    precision = right / len(found) if found else 0.0
    recall = right / len(true_edges) if true_edges else 1.0
    undirected = {frozenset(e) for e in true_edges}
    true_parents: dict[str, set[str]] = {}
    for p, c in true_edges:
        true_parents.setdefault(c, set()).add(p)
    siblings = [(u, v) for u, v in found if true_parents.get(u, set()) & true_parents.get(v, set())]
    merges = {c: ps for c, ps in true_parents.items() if len(ps) > 1}
    recovered: dict[str, set[str]] = {}
    for p, c in found:
        recovered.setdefault(c, set()).add(p)
    true_roots = {m for m in forest.models if not any(c == m for _, c in true_edges)}
    roots = set(forest.roots)
    return {"edges": len(found), "true edges": len(true_edges), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "undirected accuracy": sum(frozenset(e) in undirected for e in found) / len(found) if found else 0.0,
            "root accuracy": len(roots & true_roots) / len(true_roots) if true_roots else 1.0,
            "root precision": len(roots & true_roots) / len(roots) if roots else 0.0,
            "sibling edges": len(siblings) / len(found) if found else 0.0, "merges": len(merges),
            "merges both parents": (sum(recovered.get(c) == ps for c, ps in merges.items()) / len(merges)
                                    if merges else None),
            "candidates": forest.candidates, "seconds per model": forest.seconds / len(forest.models)}


def run(pool: Pool, top_k: int = 5) -> dict[str, Any]:
    t0 = time.perf_counter()
    rows = pool.registry.models()
    cal = sorted(r.id for r in rows if r.split == CALIBRATION_SPLIT)
    ev = sorted(r.id for r in rows if r.split != CALIBRATION_SPLIT)
    t_fit = time.perf_counter()
    fused, edges, origin = edge_model_for(pool, top_k)
    t_fit = time.perf_counter() - t_fit
    forests = {ROWS[0]: recover(pool, ev, fused, edges, top_k), ROWS[1]: mother_forest(pool, ev)}
    true_edges = registered_edges(pool.registry, ev)
    return {"pool": str(pool.root), "models": len(ev), "calibration models": len(cal), "top_k": top_k,
            "fused columns": fused["columns"], "edge model": edges.fitted_on | {"root_probability": edges.root_probability,
                                                                                "origin": origin},
            "fit seconds": t_fit,
            "table": {name: metrics(f, true_edges) for name, f in forests.items()},
            "forests": {name: f.to_dict() for name, f in forests.items()}, "truth": sorted(true_edges),
            "seconds": time.perf_counter() - t0}


def markdown(result: dict) -> str:
    cols = ["f1", "precision", "recall", "undirected accuracy", "root accuracy", "root precision", "sibling edges",
            "merges both parents", "candidates", "seconds per model"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)  # noqa: E731
    for name, row in result["table"].items():
        lines.append(f"| {name} | " + " | ".join(cell(row[c]) for c in cols) + " |")
    fit = result["edge model"]
    return "\n".join(lines) + (f"\n\n{result['models']} models, {len(result['truth'])} true edges; edge model "
                               f"{fit.get('origin', '')}: fit on "
                               f"{fit['edges']} calibration edges among {fit['pairs']} ordered candidate pairs "
                               f"(out-of-family F1 {fit['out_of_family_f1']:.3f}, root probability "
                               f"{fit['root_probability']}, {result['fit seconds']:.0f} s); fused columns: "
                               f"{', '.join(result['fused columns'])}")
