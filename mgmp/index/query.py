"""Ancestor query (SPEC §7): top-k by DNA, re-ranked by pair scores, each hit with its lineage chain.

``candidates``: the nearest models by each DNA index present (``gram``: representations on the
probe set; ``weights``: inherited weights, which finds a transferred model's source whatever its
task), plus, when re-ranking, the registered ancestors of those (a suspect's parent is usually the
ancestor of its nearest near-copies), each scored. ``decide`` answers from them:
Support (``support``), by default the fused verdict, on every registry (calibrated or not: on two builds of the
digits lineage pool it names 0.75-0.83 of the parents, 0.90-0.95 without the students, with "none" 1.00;
docs/results.md); ``fused`` and ``similarity`` on request.
- ``verdict``: the fused test of ``mgmp score fused`` (:func:`mgmp.calibration.verdict.verdict`; the pool's own test
  when fit on enough independents, else the one the package ships) on (hit → suspect) at level ``alpha`` / m over
  the m candidates tested (Bonferroni:
  a suspect with no ancestor in the registry is given one with probability ≤ ``alpha``): a hit is supported iff the
  suspect is "derived" from it. Each hit on the suspect's task is read against its own null (``references`` independent
  references per hit, trained once and cached in the pool); a hit on another task by its weights alone. Only the
  ``candidates_per_index`` (default ``top_k``) nearest of each index and their ancestors are tested. Supported hits
  are ordered by the test's P (comparable across tasks: every score is read against its source's null), those
  decided by their weights alone after them by weight cosine. P saturates for every weight-sharing relative, so the
  order among them is settled by weight distance: a hit yields to its supported registered ancestor when its own
  change explains under ``NEAR_COPY`` (2 %) of the suspect's squared distance to that ancestor (fp16 and int8 twins
  of the parent), and the first hit gives way to a supported relative of it in the registry when the suspect is
  within ``NEAR_DESCENDANT`` (0.1) of its distance to the first (an int8 copy of a registered fine-tune; not a
  quantised copy: a float model that near one is its source's copy). A magnitude-pruned suspect goes to the
  supported registered ancestor whose smallest weights are exactly its zeros (``pruned_from``) when the nearer hit's
  are not (a lighter pruning of the same model keeps a subset of the zeros and sits nearer). Chains end below
  excluded models (they are not in the registry).
- ``fused``: P(lineage) of the pool's fast fused model (``mgmp calibrate`` fits it over the cheap
  scores) for (hit → suspect) at the pool's query threshold (``mgmp calibrate`` chooses it on
  calibration queries, ``mgmp.index.calibrate``; before that, max(0.5, the fused model's threshold with ≤ 1 % false
  positives on calibration pairs)). Order among supported hits: lineage closeness without test-set generation (the
  degree of modification: a parent is one modification away, a sibling two), then DNA similarity (closeness is scored
  only for hits that a threshold ≥ min(0.5, the query's) could support and their ancestors; the rest follow by DNA
  similarity).
- ``similarity``: DNA similarity ≥ ``min_similarity``.
Then parsimony (closeness-ordered supports): a supported hit is explained by its highest registered ancestor as close to the suspect
(within ``prefer_ancestors``, also calibrated on queries, else 0.1), which takes its place in the
ranking, the hit following it: near-copies of a model (fp16, int8, a light fine-tune) are explained
by the model they copy. Verdict: the first ranked hit when any is supported, else "no ancestor in
registry". Then the parent is checked against its own starting point P (its registered parent, or a public
backbone of the registry): the backbone verdict decides whether the suspect derives from it or is its sibling via
P; a sibling, or a suspect the evidence cannot tell from one, gets P as its parent (P is an ancestor either way).
DNA-only queries (``rerank=False``) score no pair and skip the check. Merges: a suspect whose weights lie between two
supported hits' is their merge (:func:`merged_parents`), with both as parents and no backbone check.
Students and thieves: a suspect that no candidate supports may have been trained on a registered model's outputs
from its own initialisation, in any architecture, so that neither its weights nor its nearest outputs lead to its
parent. When the pool was calibrated with the student scores (``generated``, ``cae``), the
registry's roots (at most ``student_roots``, nearest by DNA first) are checked with their fused model; the most
probable root at or above the student threshold (chosen on calibration queries with the other two, else the
model's 1 % false-positive threshold) is the answer (``student_check``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import takewhile
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.progress import track

from mgmp.calibration.backbone import DERIVED, SIBLING, SiblingRule, backbone_verdict, known_start
from mgmp.calibration.fusion import fused_probability
from mgmp.calibration.null import DEFAULT_REFERENCES
from mgmp.calibration.store import Calibration
from mgmp.calibration.verdict import DEFAULT_ALPHA, pool_test, verdict
from mgmp.index.factory import KIND
from mgmp.index.store import index_path, load_index, search, suspect_dna
from mgmp.index.vectors import DNA_KINDS, INDEX_DNA
from mgmp.representations.merges import best_merge
from mgmp.representations.weights import (
    NEAR_COPY,
    explains_as_well,
    pruned_from,
    weight_distance,
    weight_state,
    zeros_selected,
)
from mgmp.scores import Pair, compute, create_score, load_pair
from model_pool.errors import BadInput, NotApplicable
from model_pool.params import Choice, Range, check_params
from model_pool.pool import Pool, load_ref
from model_pool.registry import PoolRegistry

ORDER_SCORE = ("closeness", {"generate": False})
SUPPORTS = ("verdict", "fused", "similarity")
ORDER_FLOOR = 0.5  # the lowest support threshold of the query calibration (THRESHOLDS): below it, no closeness
DEFAULT_PREFER_ANCESTORS = 0.1
NEAR_DESCENDANT = 0.1  # verdict support: a relative the suspect is this much nearer to than to the ranked hit wins
ROUNDED_COPIES = ("quantize",)  # relations that only round the parent's weights


@dataclass(frozen=True)
class QueryOptions:
    """How a query retrieves, scores and decides (``mgmp query``'s options).

    ``dna``: the DNA kinds whose indexes give candidates (the first one's index must exist, the others
    are used where built); ``candidates_per_index``: models taken from each (default 2·top_k);
    ``support_threshold`` / ``prefer_ancestors``: None reads the pool's query calibration;
    ``exclude`` and ``tag``: models left out and the tagged index to search (benchmarks, the demo); ``support``,
    ``alpha``, ``references``: what supports a hit (module docstring). Checked on construction (``QUERY_SPECS``).
    """

    top_k: int = 5
    kind: str = "flat"
    dna: tuple[str, ...] = INDEX_DNA
    rerank: bool = True
    min_similarity: float = 0.99
    support_threshold: float | None = None
    prefer_ancestors: float | None = None
    candidates_per_index: int | None = None
    suspect_data: str | None = None
    suspect_task: Any = None
    exclude: frozenset[str] = frozenset()
    tag: str = ""
    student_roots: int = 16
    student_threshold: float | None = None
    support: str = "verdict"
    alpha: float = DEFAULT_ALPHA
    references: int = DEFAULT_REFERENCES

    def __post_init__(self):
        check_params("query", QueryOptions, {f.name: getattr(self, f.name) for f in fields(self)}, QUERY_SPECS)
        if not self.dna:
            raise BadInput("query: parameter dna must name at least one DNA kind")


# support_threshold: evidence is a probability or a similarity (>= -1); above 1 it supports nothing (no parent)
QUERY_SPECS = {"top_k": Range(1, 10_000), "kind": KIND, "dna": Choice(*DNA_KINDS), "min_similarity": Range(-1, 1),
               "support_threshold": Range(-1), "prefer_ancestors": Range(0, 1), "candidates_per_index": Range(1, 100_000),
               "student_roots": Range(0, 100_000), "student_threshold": Range(-1), "support": Choice(*SUPPORTS),
               "alpha": Range(0, 0.5, open_lo=True), "references": Range(2, 1000)}


@dataclass
class Hit:
    model_id: str
    similarity: float | None  # by the first DNA kind searched (``similarities`` has every kind's)
    chain: list[str]
    probability: float | None = None
    closeness: float | None = None
    supported: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    similarities: dict[str, float] = field(default_factory=dict)
    explains: list[str] = field(default_factory=list)  # supported hits ranked after it by parsimony
    derived: bool | None = None  # the fused verdict (``verdict`` support)
    p_value: float | None = None
    distance: float | None = None  # |suspect − hit|² / |suspect|² over their aligned weight matrices (re-ranking)
    aligned: int = 0  # how many weight matrices that distance aligned
    zeros: float | None = None  # how exactly a pruned suspect's zeros are the hit's smallest weights (zeros_selected)
    relation: str | None = None  # the registered relation to its parent (``quantize``, ``finetune``, ...)


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
    dna: list[str] = field(default_factory=list)  # the DNA kinds whose indexes gave candidates
    backbone: dict | None = None  # the parent's backbone verdict, when it starts from a public backbone
    parents: list[str] = field(default_factory=list)  # a merge's two parents (the nearer first); else empty
    merge: dict | None = None  # :class:`~mgmp.representations.merges.Merge`, for a merge

    def to_dict(self) -> dict:
        return asdict(self)


def _nearest(pool: Pool, kind: str, dnas: tuple[str, ...], tag: str, vecs: dict[str, np.ndarray], n: int,
             exclude: frozenset[str], sha256: str) -> tuple[dict[str, dict[str, float]], list[str]]:
    """The ``n`` nearest models by each DNA index ({model: {kind: similarity}}, in retrieval order), and
    the registered models with the suspect's exact weights."""
    found: dict[str, dict[str, float]] = {}
    identical: list[str] = []
    reg = pool.registry
    for d in dnas:
        index = load_index(pool, kind, d, tag)
        sims, ids = search(index, vecs[d][None], min(index.ntotal, n + 1 + len(exclude)))
        kept = 0
        for sim, i in zip(sims[0], ids[0]):
            model_id = reg.dna_model(int(i)) if i >= 0 else None
            if model_id is None or model_id in exclude or model_id in identical or kept >= n:
                continue
            if reg.get(model_id).sha256 == sha256:
                identical.append(model_id)
                continue
            found.setdefault(model_id, {})[d] = float(sim)
            kept += 1
    return found, identical


def _similarities(reg: PoolRegistry, model_id: str, vecs: dict[str, np.ndarray], known: dict[str, float]) -> dict[str, float]:
    """Every searched kind's similarity of ``model_id`` to the suspect (from its stored vectors where not retrieved)."""
    out = {}
    for d, v in vecs.items():
        if d in known:
            out[d] = known[d]
        elif (blob := reg.dna_vector(model_id, d)) is not None:
            out[d] = float(np.frombuffer(blob, dtype=np.float32) @ v)
    return out


def _orderable(hits: list[Hit], evidence: str, floor: float) -> list[Hit]:
    """The hits whose closeness a ranking can read: those a support threshold ≥ ``floor`` can support, and their
    registered ancestors among the hits (the parsimony walk). Closeness is the expensive score (seconds per pair on
    real backbones), and the query calibration tries thresholds on the same candidates, so it is not scored for
    hits no threshold it tries would support."""
    by_id = {h.model_id: h for h in hits}
    keep: dict[str, Hit] = {}
    for h in hits:
        value = h.similarity if evidence == "similarity" else h.probability
        if value is not None and value >= floor:
            for m in h.chain:
                if m in by_id:
                    keep.setdefault(m, by_id[m])
    return list(keep.values())


def _parsimonious(hit: Hit, by_id: dict[str, Hit], tolerance: float | None) -> Hit:
    """``hit``'s highest registered ancestor within ``tolerance`` of the best closeness met on the way up
    (ancestors that are not candidates, e.g. excluded ones, stop the walk)."""
    best, chosen = hit.closeness, hit
    if tolerance is None or best is None:
        return hit
    for ancestor in hit.chain[1:]:
        a = by_id.get(ancestor)
        if a is None or a.closeness is None or a.closeness < best - tolerance:
            break
        chosen, best = a, max(best, a.closeness)
    return chosen


def _near_copy_ancestor(hit: Hit, by_id: dict[str, Hit], tolerance: float = NEAR_COPY) -> Hit:
    """``hit``'s highest supported registered ancestor that the suspect is as near to in weight space, up to
    ``tolerance`` of its squared distance to it: the hit's own change from that ancestor (an fp16 or int8 copy's
    rounding, a light fine-tune) explains less than that share of the suspect's distance, so the suspect carries
    none of it that its weights can show and the ancestor explains the suspect as well. The walk stops at an
    ancestor that is no supported candidate or whose distance reads other tensors (another task's head)."""
    chosen, best = hit, hit.distance
    for ancestor in hit.chain[1:]:
        a = by_id.get(ancestor)
        if (a is None or not a.supported or a.distance is None or best is None or a.aligned != hit.aligned
                or not explains_as_well(a.distance, best, tolerance)):
            break
        chosen, best = a, min(best, a.distance)
    return chosen


def _pruned_from_ancestor(hit: Hit, by_id: dict[str, Hit]) -> Hit:
    """For a magnitude-pruned suspect, ``hit``'s supported registered ancestor whose smallest weights are exactly the
    suspect's zeros, when ``hit``'s are not (:func:`~mgmp.representations.weights.pruned_from`): the suspect was
    pruned from that ancestor, and the hit, nearer in weights (a lighter pruning of the same ancestor keeps a subset
    of the same zeros), is its sibling or nephew. ``hit`` itself otherwise."""
    if hit.zeros is None or pruned_from(hit.zeros):
        return hit
    for ancestor in hit.chain[1:]:
        a = by_id.get(ancestor)
        if a is None or not a.supported:
            break
        if pruned_from(a.zeros):
            return a
    return hit


def _verdict_explains(hit: Hit, by_id: dict[str, Hit]) -> Hit:
    """The ancestor that explains a verdict-supported hit: the one the suspect was pruned from, else its highest
    near-copy ancestor."""
    pruned = _pruned_from_ancestor(hit, by_id)
    return pruned if pruned is not hit else _near_copy_ancestor(hit, by_id)


def _near_copy_relative(first: Hit, hits: list[Hit], ratio: float = NEAR_DESCENDANT) -> Hit:
    """The supported relative of ``first`` in the registry (their chains meet) nearest the suspect in weight space,
    when the suspect's squared distance to it is under ``ratio`` of its distance to ``first`` (the suspect then
    carries that hit's whole change: an int8 copy of a registered fine-tune is that fine-tune's child), else
    ``first``. Rounded copies are not taken: a float model within a quantised copy's rounding of it is that copy's
    source or a sibling, not its child; nor is a hit whose chain meets no other (its parent is not registered: the
    suspect may be that parent), nor one whose weights did not start the suspect's pruning when ``first``'s did."""
    near = [h for h in hits if h.supported and set(h.chain) & set(first.chain) and h.relation not in ROUNDED_COPIES
            and None not in (h.distance, first.distance) and h.aligned == first.aligned
            and h.distance <= ratio * first.distance and (pruned_from(h.zeros) or not pruned_from(first.zeros))]
    return min(near, key=lambda h: h.distance, default=first)


def _closeness(h: Hit) -> tuple:
    """Order of fused supports: closeness, then DNA similarity."""
    return (-(h.closeness if h.closeness is not None else -1), -(h.similarity if h.similarity is not None else -1.0))


def _verdict_strength(h: Hit) -> tuple:
    """Order of verdict supports: the test's P, then those decided by their weights alone, by weight cosine."""
    return (h.probability is None, -(h.probability if h.probability is not None else h.scores.get("weights", -1.0)),
            -(h.similarity if h.similarity is not None else -1.0))


Explain = Callable[[Hit, dict[str, Hit]], Hit]


def _rank(hits: list[Hit], strength: Callable[[Hit], tuple], explain: Explain) -> list[Hit]:
    """Supported first, by ``strength``; each supported hit placed right after the ancestor that ``explain`` says
    explains it (which takes the hit's rank when not placed yet)."""
    hits = sorted(hits, key=lambda h: (not h.supported, *strength(h)))
    by_id = {h.model_id: h for h in hits}
    ranked: dict[str, Hit] = {}
    for h in hits:
        if h.supported:
            a = explain(h, by_id)
            if a is not h:
                a.explains.append(h.model_id)
                ranked.setdefault(a.model_id, a)
        ranked.setdefault(h.model_id, h)
    return list(ranked.values())


@dataclass
class Candidates:
    """A suspect's candidates with their evidence, before any decision: ``decide`` turns them into an answer
    for a support threshold and an ancestor-preference tolerance (cheap, so benchmarks can calibrate both)."""

    suspect: str
    hits: list[Hit]
    identical: list[str]
    dna: list[str]
    evidence: str  # what a hit's support is read from: the fused "verdict", "fused" P, or DNA "similarity"
    default_threshold: float | None  # None for the verdict: its level is fixed when its candidates are tested
    calibration: dict | None = None  # the pool's query calibration (``mgmp bench index``), when stored
    described: str | None = None  # the verdict's support, as printed


def _evidence(o: QueryOptions, calibration: Calibration) -> str:
    """What supports a hit: the ``support`` option (DNA similarity without re-ranking)."""
    if not o.rerank:
        return "similarity"
    if o.support == "fused" and calibration.fused_fast is None:
        raise BadInput("query: --support fused needs the pool's fast fused model; run `mgmp calibrate` first")
    return o.support


def _tested(hits: list[Hit], pairs: dict[str, Pair], pool: Pool, o: QueryOptions) -> str:
    """Each hit's fused verdict (hit → suspect) at ``o.alpha`` / (the number of hits tested): Bonferroni, so that a
    suspect with no ancestor in the registry gets one with probability ≤ ``o.alpha``, however many candidates it
    has; returns the support's description."""
    level = o.alpha / max(len(hits), 1)
    tests, used = {lm: pool_test(pool, lm) for lm in (False, True)}, set()
    for h in track(hits, description=f"verdicts of {len(hits)} candidates (each one's references are trained once)",
                   console=Console(stderr=True), transient=True):
        test, label = tests[getattr(pairs[h.model_id].source, "is_lm", False)]
        used.add(label)
        v = verdict(pairs[h.model_id], test, level, o.references, backbone=False)
        h.derived, h.scores = v["derived"], dict(v["raw"])
        h.probability = None if math.isnan(v["P"]) else v["P"]
        h.p_value = None if math.isnan(v["p_value"]) else v["p_value"]
    return (f"the fused verdict at alpha {o.alpha:g} over {len(hits)} candidates (each at {level:.2g}; "
            f"{'; '.join(sorted(used)) or tests[False][1]})")


def _weight_distances(hits: list[Hit], pairs: dict[str, Pair]) -> None:
    """Each hit's squared weight distance from the suspect, relative to the suspect's norm (``Hit.distance``), and
    for a pruned suspect the share of its zeros that are the hit's smallest weights (``Hit.zeros``), where both have
    weights (an endpoint suspect has none)."""
    suspect = None
    for h in hits:
        pair = pairs[h.model_id]
        suspect = suspect if suspect is not None else weight_state(pair.suspect)
        source = weight_state(pair.source)
        distance, aligned = weight_distance(suspect, source)
        if aligned:
            h.distance, h.aligned, h.zeros = distance, aligned, zeros_selected(suspect, source)


def candidates(pool: Pool, suspect: str, options: QueryOptions = QueryOptions(), module=None) -> Candidates:
    """The ``candidates_per_index`` nearest models by each DNA index (default 2·top_k, ``top_k`` for the verdict),
    plus their registered ancestors when re-ranking, each scored: the support evidence, and closeness (the order of
    fused supports). ``module``: a trained MGMP checkpoint, for the ``mgmp`` DNA kind."""
    o = options
    calibration = Calibration.load(pool)
    evidence = _evidence(o, calibration)
    dnas = tuple(d for i, d in enumerate(o.dna) if i == 0 or index_path(pool, o.kind, d, o.tag).is_file())
    vecs, card = suspect_dna(pool, suspect, dnas, module)
    per_index = o.candidates_per_index or (o.top_k if evidence == "verdict" else 2 * o.top_k)
    found, identical = _nearest(pool, o.kind, dnas, o.tag, vecs, per_index, o.exclude, card.sha256)
    reg = pool.registry

    def chain(m: str) -> list[str]:  # an excluded model is not in the registry: its children's chains end below it
        return list(takewhile(lambda a: a not in o.exclude, reg.chain(m)))

    ids = list(found)
    if o.rerank:  # the registered ancestors of the candidates are candidates too
        ids += [a for m in found for a in chain(m)[1:] if a not in identical]
    hits = [Hit(m, (sims := _similarities(reg, m, vecs, found.get(m, {}))).get(dnas[0]), chain(m),
                similarities=sims, relation=reg.get(m).relation) for m in dict.fromkeys(ids)]
    pairs = {h.model_id: load_pair(pool.ref(h.model_id), suspect, pool=pool, suspect_data=o.suspect_data,
                                   suspect_task=o.suspect_task) for h in (hits if o.rerank else [])}
    fused, threshold, described = calibration.fused_fast, None, None
    if evidence == "fused":
        threshold = max(0.5, fused.get("support_threshold", 0.5))
        for h in hits:
            h.probability, h.scores = fused_probability(fused, pairs[h.model_id])
    elif evidence == "verdict":
        described = _tested(hits, pairs, pool, o)
        _weight_distances(hits, pairs)
    else:
        threshold = o.min_similarity
    if o.rerank and evidence != "verdict":  # closeness orders these supports (the verdict's P is its own order)
        order = create_score(ORDER_SCORE[0], **ORDER_SCORE[1])
        floor = min(t for t in (threshold, o.support_threshold, ORDER_FLOOR) if t is not None)
        for h in _orderable(hits, evidence, floor):
            try:
                h.closeness = compute(order, pairs[h.model_id]).value
            except NotApplicable:
                h.closeness = None
    return Candidates(suspect, hits, identical, list(dnas), evidence, threshold,
                      calibration.query if evidence == "fused" else None, described)


def decide(c: Candidates, support_threshold: float | None = None, prefer_ancestors: float | None = None,
           top_k: int = 5) -> QueryResult:
    """The answer for ``c``: hits supported at ``support_threshold``, ranked (parsimony within
    ``prefer_ancestors``), the verdict. None: the pool's query calibration, else the evidence's
    default threshold and a tolerance of 0.1."""
    cal = c.calibration or {}
    threshold = support_threshold if support_threshold is not None else cal.get("support_threshold", c.default_threshold)
    tolerance = prefer_ancestors if prefer_ancestors is not None else cal.get("prefer_ancestors", DEFAULT_PREFER_ANCESTORS)
    hits = [replace(h, explains=[]) for h in c.hits]
    for h in hits:
        value = h.similarity if c.evidence == "similarity" else h.probability
        h.supported = bool(h.derived) if c.evidence == "verdict" else value is not None and value >= threshold
    if c.evidence == "verdict":
        ranked = _rank(hits, _verdict_strength, _verdict_explains)
        nearer = _near_copy_relative(ranked[0], ranked) if ranked and ranked[0].supported else None
        ranked = [nearer, *(h for h in ranked if h is not nearer)] if nearer else ranked
    else:
        ranked = _rank(hits, _closeness, lambda h, by_id: _parsimonious(h, by_id, tolerance))
    supported = [h for h in ranked if h.supported]
    parent = ranked[0].model_id if supported else None
    chain = ranked[0].chain if supported else []
    ancestors = list(dict.fromkeys(chain + [a for h in supported for a in h.chain]))
    verdict = f"most likely parent: {parent} (chain {' -> '.join(chain)})" if parent else "no ancestor in registry"
    support = c.described or {"fused": f"fast fused P >= {threshold:.3f} (calibrated)",
                              "similarity": f"DNA similarity >= {threshold} (DNA only)"}[c.evidence]
    return QueryResult(c.suspect, ranked[:top_k], verdict, parent, ancestors, support, c.identical, chain, c.dna)


def parent_check(pool: Pool, suspect: str, parent: str, options: QueryOptions) -> dict | None:
    """The backbone question for a parent found (:func:`mgmp.calibration.backbone.backbone_verdict`), when it has
    a known starting point P (its registered parent, or a registered public backbone): derived from it, its
    sibling via P, or cannot tell; None when P is unknown or the question does not arise."""
    pair = load_pair(pool.ref(parent), suspect, pool=pool, suspect_data=options.suspect_data,
                     suspect_task=options.suspect_task)
    start = known_start(pair)
    if start is None or start.label in options.exclude:
        return None
    return backbone_verdict(pair, SiblingRule.from_dict(Calibration.load(pool).siblings))


def checked_parent(parent: str | None, found: dict | None) -> str | None:
    """The parent after :func:`parent_check`: P unless the suspect is derived from the parent found (a sibling's
    parent is P; when the evidence cannot tell, P is an ancestor either way, the parent found maybe not)."""
    return found["base"] if found is not None and found["relation"] != DERIVED else parent


def walk_up(check: Callable[[str], dict | None], parent: str) -> tuple[str, dict | None, str]:
    """:func:`checked_parent` repeated: when the suspect is a sibling of the parent found via its starting point P
    (or cannot be told from one), P gets the same question, up to the first model the suspect derives from (or
    one without a known start). A fine-tune of A ranked under A's grandchild is a sibling of the grandchild via
    A's child, then of the child via A. Returns (parent, the verdict that moved it last, the model it was about)."""
    about, found = parent, check(parent)
    up, seen = checked_parent(parent, found), {parent}
    while up not in seen:
        seen.add(up)
        more = check(up)
        if (higher := checked_parent(up, more)) == up:
            break
        about, found, up = up, more, higher
    return up, found, about


def shared_backbone(pool: Pool, suspect: str, result: QueryResult, options: QueryOptions) -> QueryResult:
    """The parent found, checked against its own starting point P (:func:`walk_up` of :func:`parent_check`): a
    sibling of it via P, or a suspect that cannot be told from one, gets P as its parent, and the verdict says why."""
    if result.parent is None:
        return result
    parent, found, about = walk_up(lambda a: parent_check(pool, suspect, a, options), result.parent)
    if parent == result.parent:
        return replace(result, backbone=found)
    chain = pool.registry.chain(parent)
    why = (f"a sibling of {about} via {parent}, not derived from {about}" if found["relation"] == SIBLING
           else f"derived from {about} or a sibling of it via {parent}: cannot tell (the suspect moved "
                f"{found['drift']:.1f}x {about}'s own change away; the cap is {found['rule']['max_drift']:.1f}); "
                f"{parent} is an ancestor either way")
    if about != result.parent:
        why += f" (checked up the chain from the ranked parent {result.parent})"
    verdict = f"most likely parent: {parent} (chain {' -> '.join(chain)}): {why}"
    return replace(result, parent=parent, chain=chain, verdict=verdict, backbone=found,
                   ancestors=list(dict.fromkeys(chain + result.ancestors)))


def merged_parents(pool: Pool, suspect: str, result: QueryResult) -> QueryResult:
    """A suspect whose weights lie between two supported hits' (a merge: :mod:`mgmp.representations.merges`) has
    both as parents, the nearer first; ``result`` unchanged otherwise."""
    supported = [h.model_id for h in result.hits if h.supported]
    if len(supported) < 2:
        return result
    states: dict[str, dict] = {}

    def weights(m: str) -> dict:
        if m not in states:
            states[m] = weight_state(load_ref(suspect, pool)[0] if m == suspect else pool.load(m)[0])
        return states[m]

    merge = best_merge(suspect, supported, weights)
    if merge is None:
        return result
    first, second = merge.parents
    chain = pool.registry.chain(first)
    verdict = (f"most likely parents: {first} and {second} (a merge: its weights are {1 - merge.weight:.2f}·{first} + "
               f"{merge.weight:.2f}·{second}, a line that explains {merge.explained:.3f} of its squared distance to "
               f"{first})")
    return replace(result, parent=first, parents=[first, second], merge=merge.to_dict(), chain=chain, verdict=verdict,
                   ancestors=list(dict.fromkeys(chain + pool.registry.chain(second) + result.ancestors)))


def weights_ancestor(pool: Pool, result: QueryResult, c: Candidates) -> QueryResult:
    """Verdict support: a parent that its weights alone made a hit (it answers another task than the suspect) and that no
    backbone check placed (its recipe is not one the check re-runs: a transfer, a quantised copy) yields to its
    registered parent when the verdict supports that one too, up the chain. The weights show that the suspect shares
    the registered parent's weights; whether it also shares the hit's own change (a child) or not (a sibling) is the
    backbone question, which no evidence answered: the registered parent is an ancestor either way."""
    if c.evidence != "verdict" or result.parent is None or result.backbone is not None:
        return result
    by_id = {h.model_id: h for h in c.hits}
    parent, moved = result.parent, []
    while (h := by_id.get(parent)) is not None and h.derived and h.probability is None:
        up = pool.registry.parents(parent)
        if len(up) != 1 or not getattr(by_id.get(up[0]), "derived", False):
            break
        moved.append(parent)
        parent = up[0]
    if not moved:
        return result
    chain = pool.registry.chain(parent)
    verdict = (f"most likely parent: {parent} (chain {' -> '.join(chain)}): the suspect shares the weights of "
               f"{' and '.join(moved)} on another task, which the weights alone cannot tell from siblings of it via "
               f"{parent}; {parent} is an ancestor either way")
    return replace(result, parent=parent, chain=chain, verdict=verdict,
                   ancestors=list(dict.fromkeys(chain + result.ancestors)))


def student_candidates(pool: Pool, suspect: str, options: QueryOptions) -> list[Hit]:
    """The registry's roots (not excluded, with a stored DNA vector; the ``student_roots`` nearest by the first DNA
    kind), each with P of the pool's fused student model, most probable first (none without such a model). Roots
    the scores cannot read are left out."""
    fused = Calibration.load(pool).fused_students
    if fused is None or not options.student_roots:
        return []
    reg = pool.registry
    vecs, card = suspect_dna(pool, suspect, options.dna[:1])
    near = {r: s[d] for r in reg.roots() if r not in options.exclude and reg.get(r).sha256 != card.sha256
            for d in vecs if d in (s := _similarities(reg, r, vecs, {}))}
    hits = []
    for root in sorted(near, key=near.get, reverse=True)[: options.student_roots]:
        pair = load_pair(pool.ref(root), suspect, pool=pool, suspect_data=options.suspect_data,
                         suspect_task=options.suspect_task)
        try:
            p, scores = fused_probability(fused, pair)
        except NotApplicable:
            continue
        hits.append(Hit(root, near[root], [root], probability=p, scores=scores))
    return sorted(hits, key=lambda h: -h.probability)


def student_threshold(pool: Pool, options: QueryOptions) -> float:
    """The student check's threshold: the option, else the query calibration's, else max(0.5, the fused student
    model's 1 % false-positive threshold on calibration pairs)."""
    if options.student_threshold is not None:
        return options.student_threshold
    cal = Calibration.load(pool)
    if cal.query and cal.query.get("student_threshold") is not None:
        return cal.query["student_threshold"]
    return max(0.5, (cal.fused_students or {}).get("support_threshold", 0.5))


def student_parent(hits: list[Hit], threshold: float) -> Hit | None:
    """The most probable student candidate at or above ``threshold``."""
    return replace(hits[0], supported=True) if hits and hits[0].probability >= threshold else None


def student_check(pool: Pool, suspect: str, result: QueryResult, options: QueryOptions) -> QueryResult:
    """A suspect without a supported ancestor gets :func:`student_parent` of the registry's roots as its parent,
    when there is one."""
    threshold = student_threshold(pool, options)
    if result.parent is not None or threshold > 1:  # above 1 (the calibration's "off"): no P passes, score none
        return result
    best = student_parent(student_candidates(pool, suspect, options), threshold)
    if best is None:
        return result
    verdict = (f"most likely parent: {best.model_id} (a student or thief of it: the student scores' fused "
               f"P {best.probability:.2f}; no weight-inheriting ancestor supported)")
    return replace(result, hits=[best, *result.hits][: options.top_k], verdict=verdict, parent=best.model_id,
                   chain=[best.model_id], ancestors=[best.model_id],
                   support=f"{result.support}; student check: the student scores' fused P (calibrated threshold)")


def query(pool: Pool, suspect: str, options: QueryOptions = QueryOptions(), module=None) -> QueryResult:
    """Rank the registry's models as ancestors of ``suspect`` (a directory or ``POOL::ID`` reference);
    ``module``: a trained MGMP checkpoint, for the ``mgmp`` DNA kind."""
    found = candidates(pool, suspect, options, module)
    result = decide(found, options.support_threshold, options.prefer_ancestors, options.top_k)
    if not options.rerank:
        return result
    merged = merged_parents(pool, suspect, result)
    placed = merged if merged.parents else weights_ancestor(pool, shared_backbone(pool, suspect, result, options), found)
    return student_check(pool, suspect, placed, options)
