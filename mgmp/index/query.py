"""Ancestor query (SPEC §7): top-k by DNA, re-ranked by pair scores, each hit with its lineage chain.

Support: the pool's fast fused model (calibrated by ``mgmp bench lineage`` over the cheap scores)
gives P(lineage) for (hit → suspect), supported above max(0.5, the calibrated support threshold:
at most 1 % false positives on calibration pairs, since one query tests many candidates); without a
calibrated model, a trained MGMP checkpoint's P(hit → suspect) ≥ δ when one is given, else DNA
similarity ≥ ``min_similarity``.
Order among supported hits: lineage closeness without test-set generation (the degree of
modification: a parent is one modification away, a sibling two), then DNA similarity. Verdict:
the first supported hit is the most likely parent, unless a registered ancestor of it is as close
to the suspect (within ``prefer_ancestors``): near-copies of a model (fp16, int8, a light
fine-tune) are then explained by the model they copy (default 0.1: the best of 0, 0.02, 0.05, 0.1,
0.2 on the calibration families of the embedded lineage pool, ``mgmp bench index``). None
supported = "no ancestor in registry".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from mgmp.index.store import load_index, search, suspect_dna
from model_pool.errors import MgmpError
from model_pool.registry import PoolRegistry

ORDER_SCORE = ("closeness", {"generate": False})


@dataclass
class Hit:
    model_id: str
    similarity: float
    chain: list[str]
    probability: float | None = None
    closeness: float | None = None
    supported: bool = False
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class QueryResult:
    suspect: str
    hits: list[Hit]
    verdict: str
    parent: str | None
    ancestors: list[str]
    support: str
    identical_to: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)  # the parent's lineage chain

    def to_dict(self) -> dict:
        return asdict(self)


def _pair(pool: Path, hit: str, suspect: str, suspect_data=None, suspect_task=None):
    from mgmp.scores import load_pair

    return load_pair(f"{pool}::{hit}", suspect, suspect_data=suspect_data, suspect_task=suspect_task)


def _mgmp_probability(module, pair, points: int = 200) -> float | None:
    """MGMP's P(hit -> suspect) on the hit's own test inputs; None when the checkpoint cannot read the pair."""
    from mgmp.provenance import provenance

    try:
        return provenance(module, pair.source, pair.suspect, pair.source_data.x_test[:points]).probability
    except MgmpError:
        return None


def query(pool: str | Path, suspect: str, top_k: int = 5, kind: str = "flat", dna: str = "gram", module=None,
          rerank: bool = True, min_similarity: float = 0.99, exclude: set[str] | None = None,
          suspect_data: str | None = None, suspect_task=None, tag: str = "",
          prefer_ancestors: float | None = 0.1, candidates: int | None = None) -> QueryResult:
    """Rank the registry's models as ancestors of ``suspect`` (a directory or ``POOL::ID`` reference)."""
    from mgmp.commands.score import FUSED_FAST_KEY, stored_fused
    from mgmp.scores import compute, create_score
    from mgmp.scores.base import NotApplicable
    from mgmp.scores.fusion import fused_probability

    pool = Path(pool)
    PoolRegistry(pool).close()  # not a pool: say so before looking for its index
    index = load_index(pool, kind, dna, tag)
    vec, card = suspect_dna(pool, suspect, dna, module)
    candidates = candidates or 2 * top_k  # DNA neighbours re-ranked; the best top_k are returned
    k = min(index.ntotal, candidates + 1 + len(exclude or ()))
    sims, ids = search(index, vec[None], k)
    fused = stored_fused(pool, FUSED_FAST_KEY) if rerank else None
    hits, identical = [], []
    with PoolRegistry(pool) as reg:
        for sim, i in zip(sims[0], ids[0]):
            model_id = reg.dna_model(int(i)) if i >= 0 else None
            if model_id is None or model_id in (exclude or set()):
                continue
            if reg.get(model_id).sha256 == card.sha256:
                identical.append(model_id)
                continue
            hits.append(Hit(model_id, float(sim), reg.chain(model_id)))
    hits = hits[:candidates]
    order = create_score(ORDER_SCORE[0], **ORDER_SCORE[1])
    for h in hits:
        if not rerank:
            h.supported = h.similarity >= min_similarity
            continue
        pair = _pair(pool, h.model_id, suspect, suspect_data, suspect_task)
        try:
            h.closeness = compute(order, pair).value
        except NotApplicable:
            h.closeness = None
        if fused is not None:
            h.probability, h.scores = fused_probability(fused, pair)
            h.supported = h.probability >= max(0.5, fused.get("support_threshold", 0.5))
        elif module is not None:
            h.probability = _mgmp_probability(module, pair)
            h.supported = h.probability is not None and h.probability >= module.hparams.threshold
        else:
            h.supported = h.similarity >= min_similarity
    hits.sort(key=lambda h: (not h.supported, -(h.closeness if h.closeness is not None else -1), -h.similarity))
    hits = hits[:top_k]
    supported = [h for h in hits if h.supported]
    parent = supported[0].model_id if supported else None
    chain = supported[0].chain if supported else []
    if parent and rerank and prefer_ancestors is not None and supported[0].closeness is not None:
        best = supported[0].closeness
        for i, ancestor in enumerate(supported[0].chain[1:], 1):
            if ancestor in (exclude or set()):
                break
            try:
                c = compute(order, _pair(pool, ancestor, suspect, suspect_data, suspect_task)).value
            except NotApplicable:
                break
            if c < best - prefer_ancestors:
                break
            parent, chain, best = ancestor, supported[0].chain[i:], max(best, c)
    ancestors = list(dict.fromkeys(chain + [a for h in supported for a in h.chain]))
    if parent:
        verdict = f"most likely parent: {parent} (chain {' -> '.join(chain)})"
    else:
        verdict = "no ancestor in registry"
    if fused is not None:
        support = f"fast fused P >= {max(0.5, fused.get('support_threshold', 0.5)):.3f} (calibrated)"
    elif module is not None and rerank:
        support = f"MGMP P(derived) >= {module.hparams.threshold} (checkpoint)"
    else:
        support = f"DNA similarity >= {min_similarity} (uncalibrated pool)"

    return QueryResult(suspect, hits, verdict, parent, ancestors, support, identical, chain)
