"""An ancestor query's parent chosen with the forest's evidence (``mgmp query --parent edges``).

The query supports hits (registered models related to the suspect); among them, the parent is the hit with the
highest P(hit is the suspect's parent) under the pool's edge model (:mod:`mgmp.forest.edges`, refit from the
training set that ``mgmp forest`` keeps in the pool's calibration store; the shipped one where the pool cannot fit
its own), on the same evidence as the forest:
the fast fused scores both ways, weight signatures, and nearness among the suspect's hits.
"""
from __future__ import annotations

from dataclasses import replace

from mgmp.calibration.store import Calibration
from mgmp.forest.edges import EDGES_KEY, EdgeModel
from mgmp.forest.evidence import collect
from mgmp.forest.recover import edge_model_for, learnable
from mgmp.index.query import QueryResult
from model_pool.errors import BadInput
from model_pool.pool import Pool

SUSPECT = "<suspect>"


def edge_model(pool: Pool) -> EdgeModel:
    """The pool's edge model, refit from the training set ``mgmp forest`` kept; the shipped one (with its fused
    model) for a pool that cannot fit its own (:func:`~mgmp.forest.recover.learnable`); one clear error for a pool
    that can but has not."""
    training = pool.calibration.get(EDGES_KEY)
    if training is not None and Calibration.load(pool).fused_fast is not None:
        return EdgeModel.from_training(training)
    if not learnable(pool):
        return edge_model_for(pool)[1]
    raise BadInput(f"{pool.root}: --parent edges needs the pool's edge model: run `mgmp forest {pool.root}` "
                   "once (it keeps the training set) on a calibrated pool")


def parent_probabilities(pool: Pool, suspect: str, hits: list[str], model: EdgeModel) -> dict[str, float]:
    """P(hit is ``suspect``'s parent) for each of ``hits`` (registered ids), the hits being the suspect's
    candidates for the nearness evidence."""
    evidence = collect(pool, [*hits, SUSPECT], model.fused or Calibration.load(pool).fused_fast, refs={SUSPECT: suspect},
                       pairs=[(h, SUSPECT) for h in hits])
    p = model.probabilities(evidence)
    return {h: p[(h, SUSPECT)] for h in hits}


def edge_parent(pool: Pool, suspect: str, result: QueryResult, model: EdgeModel) -> QueryResult:
    """``result`` with its parent re-chosen among the supported hits by P(parent); unchanged without support."""
    supported = [h.model_id for h in result.hits if h.supported]
    if not supported:
        return result
    p = parent_probabilities(pool, suspect, supported, model)
    for h in result.hits:
        if h.supported:
            h.scores["P(parent)"] = p[h.model_id]
    parent = max(supported, key=p.get)
    chain = pool.registry.chain(parent)
    verdict = f"most likely parent: {parent} (P(parent) {p[parent]:.2f}; chain {' -> '.join(chain)})"
    return replace(result, parent=parent, chain=chain, verdict=verdict,
                   ancestors=list(dict.fromkeys(chain + result.ancestors)))
