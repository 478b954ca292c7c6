"""Recover the directed lineage forest of registered models whose edges are unknown (SPEC §12).

1. evidence (:mod:`mgmp.forest.evidence`): candidate pairs from the DNA indexes' nearest neighbours, the fused
   pair scores both ways, weight signatures, nearness among each model's candidates;
2. P(u is v's parent) for every ordered candidate pair (:class:`~mgmp.forest.edges.EdgeModel`, fit on the
   calibration families' registered edges, of this pool or of the ``--calibration`` pool);
3. the maximum-weight spanning arborescence (:mod:`mgmp.forest.arborescence`) under a virtual root: a model takes
   a parent only where P beats the edge model's root weight (lower for a model with a close relative), else it is
   a root;
4. merges (:mod:`mgmp.representations.merges`): a model whose weights lie between two of its candidates' or their
   candidates' takes one of them as the arborescence's parent and the other as a second parent;
5. a magnitude-pruned model hangs from the model whose smallest weights are exactly its zeros, a root included;
   then near-copy parsimony, as ``mgmp query``'s: a model hung from a near-copy of its parent's parent (an int8 twin, a
   LoRA that barely moved the weights) moves up to that ancestor, which explains it as well;
6. shared backbones: where a parent started from a public backbone P of the registry, the backbone verdict
   (:mod:`mgmp.calibration.backbone`) decides whether its child is one or a sibling via P; a sibling, and a
   root that starts from P, hang from P instead, a *virtual* node when P is not among the models.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from mgmp._jsonio import write_text
from mgmp.calibration.backbone import SIBLING, SiblingRule, backbone_verdict, public_start
from mgmp.calibration.fit import CALIBRATION_SPLIT
from mgmp.calibration.store import Calibration
from mgmp.forest.arborescence import Edge, arborescence
from mgmp.forest.edges import EdgeModel
from mgmp.forest.evidence import collect
from mgmp.index.vectors import INDEX_DNA
from mgmp.representations.merges import Merge, find_merges
from mgmp.representations.weights import explains_as_well, pruned_from, weight_distance, weight_state, zeros_selected
from mgmp.scores import load_pair
from model_pool.errors import BadInput
from model_pool.guards import load_json
from model_pool.pool import Pool
from model_pool.registry import PoolRegistry


@dataclass
class Forest:
    """Recovered edges (parent → child) and roots of ``models``; ``candidates``: pairs scored."""

    models: list[str]
    edges: list[Edge]
    roots: list[str]
    candidates: int
    method: str
    seconds: float
    virtual: list[str] = field(default_factory=list)  # public backbones added as common parents, not in ``models``
    merges: list[dict] = field(default_factory=list)  # :class:`~mgmp.representations.merges.Merge` of each two-parent model

    def parents(self) -> dict[str, list[str]]:
        """Each model's recovered parents (none for a root, two for a merge)."""
        found: dict[str, list[str]] = {m: [] for m in self.models + self.virtual}
        for e in self.edges:
            found[e.child].append(e.parent)
        return found

    def to_dict(self) -> dict:
        return asdict(self)


def registered_edges(reg: PoolRegistry, ids: list[str]) -> set[tuple[str, str]]:
    """The registry's edges among ``ids`` (a merge has two)."""
    wanted = set(ids)
    return {(p, c) for c in ids for p in reg.parents(c) if p in wanted}


def fit_edges(pool: Pool, ids: list[str], fused: dict, top_k: int = 5) -> EdgeModel:
    """An edge model fit on the registered edges among ``ids`` (calibration families)."""
    reg = pool.registry
    truth = registered_edges(reg, ids)
    if not truth:
        raise BadInput(f"{pool.root}: no registered edges among the calibration models to learn parents from")
    return EdgeModel.fit(collect(pool, ids, fused, top_k), truth, {m: reg.chain(m)[-1] for m in ids})


MIN_FAMILIES = 2  # calibration families with registered edges that an edge model of a pool's own is fit on
SHIPPED = Path(__file__).with_name("default_edges.json")  # scripts/ship_forest_edges.py writes it


def learnable(pool: Pool) -> bool:
    """Is ``pool`` calibrated and do its calibration families hold registered edges in ``MIN_FAMILIES`` or more
    families? (With one, the root probability cannot be chosen out of family and the model sees one family's
    shapes only: on the torchvision plan, F1 0.14 against 0.56 with the shipped model, docs/results.md.)"""
    cal = [r.id for r in pool.registry.models() if r.split == CALIBRATION_SPLIT]
    families = {pool.registry.chain(c)[-1] for _, c in registered_edges(pool.registry, cal)}
    return Calibration.load(pool).fused_fast is not None and len(families) >= MIN_FAMILIES


def edge_model_for(pool: Pool, top_k: int = 5) -> tuple[dict, EdgeModel, str]:
    """The fast fused model and edge model a forest is recovered with, and where they come from: fit on ``pool``'s
    calibration families where it has enough (:func:`learnable`), else the ones the package ships (fit on the
    digits lineage pool's calibration families), as the shipped verdict serves a user with no pool."""
    if learnable(pool):
        fused = Calibration.load(pool).fused_fast
        cal = [r.id for r in pool.registry.models() if r.split == CALIBRATION_SPLIT]
        return fused, fit_edges(pool, cal, fused, top_k), f"fit on {pool.root.name}'s calibration families"
    shipped = load_json(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))
    model = EdgeModel.from_training(shipped["edges"])
    model.fused = shipped["fused"]
    return shipped["fused"], model, f"shipped (fit on {shipped['fitted_on']}'s calibration families)"


def ship(path: Path, pool: Pool, top_k: int = 5) -> dict:
    """Write ``pool``'s fast fused model and an edge model fit on its calibration families as the shipped pair
    (numbers rounded to six significant digits: the training set is the file)."""
    if not learnable(pool):
        raise BadInput(f"{pool.root}: not calibrated, or fewer than {MIN_FAMILIES} calibration families with edges")
    fused, model, _ = edge_model_for(pool, top_k)

    def rounded(v):
        if isinstance(v, float):
            return float(f"{v:.6g}")
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return [rounded(x) for x in v] if isinstance(v, list) else v

    doc = {"fitted_on": pool.root.name, "fused": fused, "edges": model.training()}
    write_text(path, json.dumps(rounded(doc), separators=(",", ":")))
    return doc


def recover(pool: Pool, ids: list[str], fused: dict, edges: EdgeModel, top_k: int = 5,
            dnas: tuple[str, ...] = INDEX_DNA) -> Forest:
    """The lineage forest of ``ids`` (registered models)."""
    if len(ids) < 2:
        raise BadInput("a forest needs at least two models")
    t0 = time.perf_counter()
    evidence = collect(pool, ids, fused, top_k, dnas)
    p = edges.probabilities(evidence)
    detail = {k: {"P fused": evidence.p_fused[k], "P fused back": evidence.p_fused[k[::-1]]} for k in p}
    weights = lru_cache(maxsize=256)(lambda m: weight_state(pool.load(m)[0]))
    merges = find_merges(ids, two_hops(evidence.neighbours()), weights)
    found, roots = arborescence(ids, *constrain(p, edges.root_weights(evidence), merges), detail)
    found, roots = pruning_parents(second_parents(found, merges, p), roots, evidence.neighbours(), weights)
    forest = Forest(list(ids), near_copy_parents(found, weights), roots,
                    len(evidence.pairs), "fused", 0.0, merges=[m.to_dict() for m in merges.values()])
    forest = shared_backbones(pool, forest, SiblingRule.from_dict(Calibration.load(pool).siblings))
    forest.seconds = time.perf_counter() - t0
    return forest


def two_hops(neighbours: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Each model's candidates and theirs: a merge's own near-copies (quantised or noisy twins) can fill its
    candidate list and push out its parents, which remain its copies' candidates."""
    return {m: list(dict.fromkeys(x for x in [*near, *(y for n in near for y in neighbours.get(n, []))] if x != m))
            for m, near in neighbours.items()}


def constrain(probability: Mapping[tuple[str, str], float], root_weights: Mapping[str, float],
              merges: Mapping[str, Merge]) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Edge probabilities and root weights under which a merge takes one of its two parents (no other parent, not
    a root) and parents neither of them; the arborescence then chooses which one, the other is added after. A
    parent's edge weighs at least the merge's explained share (its parents need not be candidate pairs)."""
    kept = {(a, b): p for (a, b), p in probability.items()
            if not (b in merges and a not in merges[b].parents) and not (a in merges and b in merges[a].parents)}
    for m, merge in merges.items():
        for u in merge.parents:
            kept[(u, m)] = max(kept.get((u, m), 0.0), merge.explained)
    return kept, {m: 0.0 if m in merges else r for m, r in root_weights.items()}


def second_parents(edges: list[Edge], merges: dict[str, Merge], probability: dict[tuple[str, str], float]) -> list[Edge]:
    """``edges`` plus, for each merge whose arborescence parent is one of its two, an edge from the other (unless
    the merge is already its ancestor)."""
    parent = {e.child: e for e in edges}

    def ancestors(m: str) -> set[str]:
        seen = set()
        while m in parent and m not in seen:
            seen.add(m)
            m = parent[m].parent
        return seen | {m}

    out = list(edges)
    for child, merge in merges.items():
        e = parent.get(child)
        if e is None or e.parent not in merge.parents:
            continue
        other = merge.parents[1] if e.parent == merge.parents[0] else merge.parents[0]
        if child in ancestors(other):
            continue
        e.evidence["merge"] = merge.to_dict()
        weight = max(probability.get((other, child), 0.0), merge.explained)
        out.append(Edge(other, child, weight, {"merge": merge.to_dict()}))
    return sorted(out, key=lambda e: (e.parent, e.child))


def pruning_parents(edges: list[Edge], roots: list[str], neighbours: Mapping[str, list[str]],
                    weights: Callable[[str], Mapping]) -> tuple[list[Edge], list[str]]:
    """A magnitude-pruned model (a root, or hung from a model whose smallest weights are not its zeros) moves to the
    one, among its candidates and its parent's ancestors, whose smallest weights are exactly its zeros
    (``pruned_from``; the nearest in weights of several): the mask proves the edge and its direction, whatever the
    edge model said. Never to one of its own descendants; merges keep their two parents."""
    parents: dict[str, list[Edge]] = {}
    children: dict[str, list[str]] = {}
    for e in edges:
        parents.setdefault(e.child, []).append(e)
        children.setdefault(e.parent, []).append(e.child)

    def line(m: str | None) -> list[str]:
        """m and its single-parent ancestors."""
        out = []
        while m is not None and m not in out:
            out.append(m)
            m = parents[m][0].parent if len(parents.get(m, [])) == 1 else None
        return out

    def subtree(m: str) -> set[str]:
        seen, todo = {m}, [m]
        while todo:
            for c in children.get(todo.pop(), []):
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return seen

    left = list(roots)
    for m in [*roots, *(c for c, up in parents.items() if len(up) == 1)]:
        child, up = weights(m), parents.get(m, [None])[0]
        too_few_zeros = zeros_selected(child, child) is None
        if too_few_zeros or (up and pruned_from(zeros_selected(child, weights(up.parent)))):
            continue
        below = subtree(m)
        starts = [u for u in dict.fromkeys([*neighbours.get(m, []), *line(up and up.parent)])
                  if u not in below and pruned_from(zeros_selected(child, weights(u)))]
        if not starts:
            continue
        u = min(starts, key=lambda u: weight_distance(child, weights(u))[0])
        if up is None:
            up = Edge(u, m, 1.0)
            edges.append(up)
            parents[m] = [up]
            left.remove(m)
        else:
            children[up.parent].remove(m)
        up.evidence["pruned_from"], up.parent = u, u
        children.setdefault(u, []).append(m)
    return sorted(edges, key=lambda e: (e.parent, e.child)), left


def near_copy_parents(edges: list[Edge], weights: Callable[[str], Mapping]) -> list[Edge]:
    """Each single-parent edge p → c moved up to p's own single parent g, repeatedly, while g explains c as well as p
    does (:func:`~mgmp.representations.weights.explains_as_well` on their weight distances to c, aligned on the same
    tensors): p's own change is not visible in c. A magnitude pruning moves only to another model whose smallest
    weights are its zeros (a near-copy of its start: :func:`pruning_parents`); merges keep their two parents; the
    forest stays acyclic (c only moves to an ancestor of its parent)."""
    parents: dict[str, list[Edge]] = {}
    for e in edges:
        parents.setdefault(e.child, []).append(e)

    def single(m: str) -> str | None:
        up = parents.get(m, [])
        return up[0].parent if len(up) == 1 else None

    for e in edges:
        if len(parents[e.child]) != 1:
            continue
        child = weights(e.child)
        pruned = pruned_from(zeros_selected(child, weights(e.parent)))
        to_parent, aligned = weight_distance(child, weights(e.parent))
        while (g := single(e.parent)) is not None:
            to_g, aligned_g = weight_distance(child, weights(g))
            if not aligned or aligned != aligned_g or not explains_as_well(to_g, to_parent) or (
                    pruned and not pruned_from(zeros_selected(child, weights(g)))):
                break
            e.evidence.setdefault("near_copy_of", []).append(e.parent)
            e.parent, to_parent = g, min(to_parent, to_g)
    return sorted(edges, key=lambda e: (e.parent, e.child))


def _public_start(pool: Pool, a: str, b: str):
    """The pair (a → b) and a's starting point, when that is a public backbone of the registry; else None."""
    pair = load_pair(pool.ref(a), pool.ref(b), pool=pool)
    start = public_start(pair)
    return (pair, start) if start is not None else None


def shared_backbones(pool: Pool, forest: Forest, rule: SiblingRule) -> Forest:
    """Step 4 of the module docstring."""
    if not any(r.tags.get("public") for r in pool.registry.models()):
        return forest
    models, virtual = set(forest.models), set(forest.virtual)
    for e in forest.edges:
        if "merge" in e.evidence or (found := _public_start(pool, e.parent, e.child)) is None:
            continue
        verdict = backbone_verdict(found[0], rule)
        e.evidence["backbone"] = verdict
        if verdict is not None and verdict["relation"] == SIBLING:
            e.evidence["sibling_of"], e.parent = e.parent, found[1].label
            virtual |= {e.parent} - models
    for r in list(forest.roots):
        if (found := _public_start(pool, r, r)) is not None and found[1].label != r:
            forest.edges.append(Edge(found[1].label, r, 1.0, {"starts_from": found[1].label}))
            forest.roots.remove(r)
            virtual |= {found[1].label} - models
    forest.virtual = sorted(virtual)
    forest.roots = sorted(set(forest.roots) | virtual)
    forest.edges.sort(key=lambda e: (e.parent, e.child))
    return forest
