"""Query calibration: the support threshold and ancestor-preference tolerance of ``mgmp query``, chosen
on calibration queries (a step of ``mgmp calibrate``; ``mgmp bench index`` reports the same protocol on
the evaluation families).

Protocol: an index of the pool without a held-out set — derived models whose parent stays indexed
(one and several generations deep) and, as "unrelated" suspects, one source's whole family plus
some independents (no ancestor indexed: the answer must be "none"). ``one_at_a_time``: each derived suspect is
held out alone (with its descendants), the rest of the set stays registered: a new model arriving at a registry
that holds everything else, where the set protocol also hides the suspect's siblings and, for a held-out model
with children, the intermediate of their chains. ``evaluate`` scores the verdicts with torchmetrics: hit
rate@1/@5 and MRR of the true parent among the ranked hits.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from rich.progress import track
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR

from mgmp.calibration.fit import STUDENT_RELATIONS
from mgmp.calibration.store import Calibration
from mgmp.index.query import (
    ORDER_FLOOR,
    QueryOptions,
    QueryResult,
    candidates,
    decide,
    merged_parents,
    parent_check,
    student_candidates,
    student_parent,
    student_threshold,
    walk_up,
    weights_ancestor,
)
from mgmp.index.store import build_indexes
from model_pool.errors import BadInput
from model_pool.pool import Pool


@dataclass(frozen=True)
class Protocol:
    """Held-out ``{source}-{variant}`` derived models (parents indexed; or the ``held`` ids given) and unrelated
    suspects: a whole family and some independents, none of them indexed (the answer must be "none");
    ``outside``: models left out of the index as well (another split's world)."""

    sources: tuple[str, ...]
    variants: tuple[str, ...]
    unrelated_family: str | None
    unrelated: tuple[str, ...]
    held: tuple[str, ...] = ()
    outside: tuple[str, ...] = ()
    one_at_a_time: bool = False

    def held_out(self, reg) -> list[str]:
        """The derived suspects that exist in registry ``reg``."""
        ids = self.held or [f"{s}-{v}" for s in self.sources for v in self.variants]
        return [m for m in ids if reg.has(m)]

    @classmethod
    def from_tags(cls, reg, split: str, unrelated_per_family: int = 5) -> "Protocol":
        """The protocol of a pool tagged as lineage plans tag it (``role: source`` / ``independent``, ``split``):
        the leaves of the split's sources' families held out (their parents stay indexed); with two sources or
        more, the last one's family is the unrelated one; the split's independents are unrelated suspects. The other
        splits' models stay out of the index, as they stay out of the split's pairs in ``bench lineage``: a plan
        keeps the public backbones of one split apart, not across splits (an independent fine-tune of Lite2 in
        one split is a sibling via Lite2 of a Lite2 family in the other)."""
        models = reg.models()
        rows = {r.id: r for r in models if r.split == split}
        sources = sorted(i for i, r in rows.items() if r.tags.get("role") == "source")
        if not sources:
            raise BadInput(f"{reg.root}: no source of split {split!r} (models tagged role: source)")
        family = sources.pop() if len(sources) > 1 else None
        held = tuple(sorted(d for s in sources for d in reg.descendants(s) if not reg.children(d)))
        unrelated = [family, *sorted(reg.descendants(family))[:unrelated_per_family - 1]] if family else []
        unrelated += sorted(i for i, r in rows.items() if r.tags.get("role") == "independent")
        outside = tuple(sorted(r.id for r in models if r.split and r.split != split))
        return cls(tuple(sources), (), family, tuple(unrelated), held, outside)


VARIANTS = ("ft-heavy", "ft-vheavy", "prune50", "int4", "adv", "distill", "lora", "tr5", "tr-prune", "extract",
            "gen3-int8", "gen2-prune")  # the last two are later generations (their parents gen2-ft, tr10 stay indexed)
EVALUATION = Protocol(("src-a", "src-b"), VARIANTS, "src-m",
                      ("src-m", "src-m-ft-heavy", "src-m-tr5", "src-m-distill", "src-m-extract", "src-m-int8",
                       "ind-small_cnn-s43", "ind-mlp-s43"))
CALIBRATION = Protocol(("cal-a", "cal-m"), VARIANTS, "cal-n",
                       ("cal-n", "cal-n-ft-heavy", "cal-n-tr5", "cal-n-distill", "cal-n-extract", "cal-n-int8",
                        "ind-small_cnn-cal-s53", "ind-mlp-cal-s53"))
BENCH_TAG = "bench-heldout"
THRESHOLDS = (ORDER_FLOOR, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)  # support thresholds on the fused P tried on calibration queries
EPSILONS = (0.0, 0.02, 0.05, 0.1, 0.2)  # ancestor-preference tolerances tried
STUDENT_OFF = 1.01  # a student threshold no P reaches: the check never answers
STUDENT_THRESHOLDS = (*THRESHOLDS, STUDENT_OFF)  # tried on the fused student P when the pool has that model


def collect(pool: Pool, protocol: Protocol = EVALUATION, options: QueryOptions = QueryOptions()) -> list[dict]:
    """Index the pool without the protocol's suspects (apart from its own indexes) and gather every
    suspect's scored candidates, with its true parent and chain (None for unrelated suspects)."""
    reg = pool.registry
    held = protocol.held_out(reg)
    unrelated = [m for m in protocol.unrelated if reg.has(m)]
    if not held:
        raise BadInput(f"{pool.root}: none of the held-out models of the query protocol exist")
    family = protocol.unrelated_family
    hidden = {family, *reg.descendants(family)} if family else set()
    excluded = frozenset(set(unrelated) | hidden | set(protocol.outside) | (set() if protocol.one_at_a_time else set(held)))
    parents = {m: reg.parents(m)[0] for m in held}
    true_chain = {m: reg.chain(parents[m]) for m in held}
    build_indexes(pool, options.kind, options.dna, exclude=excluded, rebuild=True, tag=BENCH_TAG)

    def exclude(m: str) -> frozenset[str]:  # the suspect and its descendants are never registered before it
        return excluded | {m, *reg.descendants(m)} if protocol.one_at_a_time and m in parents else excluded

    return [{"suspect": m, "expected": parents.get(m), "true_chain": true_chain.get(m),
             "later_generation": m in parents and parents[m] not in protocol.sources,
             "student": m in parents and any(r in reg.get(m).relation for r in STUDENT_RELATIONS),
             "candidates": candidates(pool, pool.ref(m), replace(options, exclude=exclude(m), tag=BENCH_TAG)),
             "exclude": exclude(m)}
            for m in track(held + unrelated, description="querying held-out suspects", transient=True)]


Check = Callable[[dict, QueryResult, float | None], tuple[str | None, dict | None]]


def parent_checker(pool: Pool, collected: list[dict]) -> Check:
    """``mgmp query``'s steps after the decision, for the protocol's suspects (its held-out models stay out of the
    answers): a suspect between two supported hits is their merge (:func:`merged_parents`); a parent found is checked
    against its own starting point (:func:`walk_up` of :func:`parent_check`), and one that no check placed yields to
    its registered parent where the weights alone made it a hit (:func:`weights_ancestor`); a suspect without one
    gets the student check (:func:`student_parent`, at the given student threshold, None: the pool's):
    (collected suspect, decided result, student threshold) -> (parent, verdict)."""
    default = student_threshold(pool, QueryOptions())
    checked: dict[tuple[str, str], dict | None] = {}
    students: dict[str, list] = {}
    merges: dict[tuple, QueryResult] = {}

    def check(c: dict, res: QueryResult, threshold: float | None = None) -> tuple[str | None, dict | None]:
        suspect, options = c["suspect"], QueryOptions(exclude=c["exclude"])
        if res.parent is None:
            if suspect not in students:
                students[suspect] = student_candidates(pool, pool.ref(suspect), options)
            found = student_parent(students[suspect], default if threshold is None else threshold)
            return (found.model_id, {"relation": "student", "probability": found.probability,
                                     "base": found.model_id}) if found else (None, None)
        key = (suspect, tuple(h.model_id for h in res.hits if h.supported))
        if key not in merges:
            merges[key] = merged_parents(pool, pool.ref(suspect), res)
        if merges[key].parents:
            return merges[key].parent, {"relation": "merge", "base": merges[key].parents[1]}

        def one(model: str) -> dict | None:
            if (suspect, model) not in checked:
                checked[suspect, model] = parent_check(pool, pool.ref(suspect), model, options)
            return checked[suspect, model]

        parent, found, _ = walk_up(one, res.parent)
        if found is None:
            parent = weights_ancestor(pool, res, c["candidates"]).parent
        return parent, found

    return check


def evaluate(collected: list[dict], support_threshold: float | None = None, prefer_ancestors: float | None = None,
             top_k: int = 5, check: Check | None = None, student_threshold: float | None = None) -> dict[str, Any]:
    """Verdicts at one support threshold and tolerance; hit rate@1/@5 and MRR (torchmetrics) of the true
    parent among the ranked hits, top-1 parent (the verdict, after ``check`` when given: :func:`parent_checker`;
    ``ranked_top1_parent`` before it; ``top1_parent_no_students`` without the distilled and extracted suspects, which
    inherit no weight), chains of later generations, "none" rate."""
    rows = []
    for c in collected:
        res = decide(c["candidates"], support_threshold, prefer_ancestors, top_k)
        parent, found = check(c, res, student_threshold) if check is not None else (res.parent, None)
        rows.append({"suspect": c["suspect"], "expected": c["expected"], "parent": parent, "ranked_parent": res.parent,
                     "parent_check": found and {k: found.get(k) for k in ("relation", "inheritance", "drift", "base",
                                                                          "probability")},
                     "hits": [h.model_id for h in res.hits], "supported": [h.model_id for h in res.hits if h.supported],
                     "chain": res.chain, "true_chain": c["true_chain"], "later_generation": c["later_generation"],
                     "student": c.get("student", False),
                     "support": res.support,
                     "hit_details": [[h.model_id, h.similarities, h.probability, h.closeness, h.distance]
                                     for h in res.hits]})
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
        "students": sum(r["student"] for r in derived),
        "top1_parent_no_students": float(np.mean([r["parent"] == r["expected"] for r in derived if not r["student"]]
                                                 or [np.nan])),
        "ranked_top1_parent": float(np.mean([r["ranked_parent"] == r["expected"] for r in derived])),
        "hit_rate@1": float(RetrievalHitRate(top_k=1)(p, t, indexes=i)),
        "hit_rate@5": float(RetrievalHitRate(top_k=5)(p, t, indexes=i)),
        "mrr": float(RetrievalMRR()(p, t, indexes=i)),
        "multi_generation_chain_correct": float(np.mean([r["chain"] == r["true_chain"] for r in multi])) if multi else None,
        "unrelated_none": float(np.mean([r["parent"] is None for r in rows if not r["expected"]])),
        "queries": rows,
    }


def has_protocol(pool: Pool, protocol: Protocol = CALIBRATION) -> bool:
    """Does the pool hold the protocol's held-out models (a digits_lineage-style pool)?"""
    return bool(protocol.held_out(pool.registry))


def protocol_for(pool: Pool, split: str) -> Protocol:
    """The digits lineage pool's fixed protocol of ``split`` where the pool holds it, else one derived from the
    pool's tags (:meth:`Protocol.from_tags`): any lineage pool built from a tagged plan."""
    fixed = EVALUATION if split == "eval" else CALIBRATION
    return fixed if has_protocol(pool, fixed) else Protocol.from_tags(pool.registry, split)


def calibrate_queries(pool: Pool, protocol: Protocol = CALIBRATION, kind: str = "flat", save: bool = True) -> dict[str, Any]:
    """For ``--support fused``: the support threshold, ancestor-preference tolerance and (with a fused student model) student threshold with
    the best balanced verdict accuracy (mean of top-1 parent and "none" rates) on the calibration queries; stored
    for ``mgmp query``. Ties: the lowest support threshold and tolerance, the highest student threshold."""
    cal = Calibration.load(pool)
    if cal.fused_fast is None:
        raise BadInput(f"{pool.root}: no calibrated fused model; run `mgmp calibrate {pool.root}` first")
    collected = collect(pool, protocol, QueryOptions(kind=kind, support="fused"))
    check = parent_checker(pool, collected)
    students = STUDENT_THRESHOLDS if cal.fused_students is not None else (None,)
    grid = {}
    for thr in THRESHOLDS:
        for eps in EPSILONS:
            for st in students:
                r = evaluate(collected, thr, eps, check=check, student_threshold=st if st is not None else STUDENT_OFF)
                grid[(thr, eps, st)] = {"top1_parent": r["top1_parent"], "unrelated_none": r["unrelated_none"],
                                        "balanced": (r["top1_parent"] + r["unrelated_none"]) / 2}
    thr, eps, st = max(grid, key=lambda k: (grid[k]["balanced"], -k[0], -k[1], k[2] or 0))
    chosen = {"support_threshold": thr, "prefer_ancestors": eps, **({"student_threshold": st} if st else {}),
              **grid[(thr, eps, st)], "sources": list(protocol.sources), "unrelated": list(protocol.unrelated)}
    if save:
        Calibration(query=chosen).save(pool)
    return {"chosen": chosen, "grid": [{"support_threshold": t, "prefer_ancestors": e, "student_threshold": s, **v}
                                       for (t, e, s), v in grid.items()]}


