"""Backbone-aware inheritance: is B derived from A, or a sibling of A via their common starting point P?

Fine-tunes of one public backbone look alike to every weight or output similarity. What tells them apart is
what A owns beyond its recipe. Reference siblings A'_j re-run A's recipe from A's starting point P (its
registered parent, or the ``base`` model given with the pair, e.g. the public backbone a root was initialised
from) with other seeds; u_j = A − A'_j with the siblings' common task direction
t = mean_j (A'_j − P) projected out (how far a fine-tune moves along it varies from seed to seed) is A's own part.
A model derived from A carries it whole, a sibling carries none of it:

    ρ_j = <B − A'_j, u_j> / |u_j|²    ≈ 1 derived from A;   ≈ 0.5 a sibling fine-tuned like A; lower for others

value = mean_j ρ_j (higher = derived from A), over the ≥ 2-D float tensors that A, B and P share by name and
shape (a transferred head drops out); 0 when B does not start from P at all (weight cosine to P below
``min_base_cosine``: nothing of A can be in it, and ρ of unrelated weights is noise of any size). The reference
siblings are generated once per source and cached.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from mgmp.representations.weights import gram, weight_cosine, weight_names
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from mgmp.scores.references import generated_model
from model_pool.card import ModelCard
from model_pool.errors import NotApplicable
from model_pool.params import SEED, Range
from model_pool.pool import Pool
from model_pool.recipes import RecipeContext

TRAINED = ("finetune", "finetune_top", "finetune_last", "adapter", "scratch")  # recipes whose result depends on the seed
DEFAULT_RECIPE = ("finetune", {"epochs": 2, "lr": 1e-3})  # for a source whose recipe is not recorded
RECOGNISE_COSINE = 0.9  # a fine-tune keeps ≥ 0.98 of its backbone on every pool measured; independents ≈ 0


@dataclass
class StartingPoint:
    """P, the recipe that made A from it, and where P came from (``given`` with the pair, A's ``registered``
    parent, or a public backbone of the pool ``recognised`` in A's weights); ``public``: P is tagged public."""

    model: nn.Module
    card: ModelCard
    relation: str
    params: dict
    label: str
    found: str
    public: bool = False


def starting_point(pair: Pair) -> StartingPoint:
    """P for ``pair``: the pair's ``base`` (a root "trained from scratch" on top of it, i.e. initialised from a
    pretrained backbone, is re-run as a fine-tune of it), else A's registered parent, else the pool's public
    backbone (registry tag ``public: true``) whose weights A's are closest to (cosine ≥ ``RECOGNISE_COSINE``)."""
    card = pair.source_card
    relation, params = card.relation, dict(card.recipe.get("params", {}))
    if pair.base is not None:
        return StartingPoint(pair.base, pair.base_card, *_recipe_on_base(card), pair.base_label or "the given base",
                             "given")
    reg = pair.pool.registry if pair.pool is not None and pair.source_id else None
    parents = reg.parents(pair.source_id) if reg is not None else []
    if len(parents) == 1 and relation in TRAINED and relation != "scratch":
        model, parent_card = pair.pool.load(parents[0])
        return StartingPoint(model, parent_card, relation, params, parents[0], "registered",
                             bool(reg.get(parents[0]).tags.get("public")))
    if reg is not None and not parents and (known := recognised_backbone(pair)) is not None:
        model, base_card, base_id = known
        return StartingPoint(model, base_card, *_recipe_on_base(card), base_id, "recognised", True)
    raise NotApplicable("inheritance needs the source's starting point: a registered parent it was trained from, "
                        "a public backbone of the pool (tag public: true) it was initialised from, or --base MODEL")


def _recipe_on_base(card: ModelCard) -> tuple[str, dict]:
    """A's recipe as re-run from a backbone: a root "trained from scratch" on top of it was fine-tuned from it."""
    relation, params = card.relation, dict(card.recipe.get("params", {}))
    if relation not in TRAINED:
        return DEFAULT_RECIPE[0], dict(DEFAULT_RECIPE[1])
    return ("finetune" if relation == "scratch" else relation), params


def recognised_backbone(pair: Pair) -> tuple[nn.Module, ModelCard, str] | None:
    """The pool's public backbone (same architecture as A, not A itself) closest to A in weights, when the
    cosine reaches ``RECOGNISE_COSINE``."""
    best = None
    for row in pair.pool.registry.models():
        if not row.tags.get("public") or row.id == pair.source_id or row.arch != pair.source_card.arch:
            continue
        model, card = pair.pool.load(row.id)
        cos, shared = weight_cosine(pair.source, model)
        if shared and cos >= RECOGNISE_COSINE and (best is None or cos > best[0]):
            best = (cos, model, card, row.id)
    return best[1:] if best else None


def check_claimed_base(pool: Pool, model: nn.Module, names: list[str]) -> dict:
    """A claimed base model (HF ``base_model``) matched to the registry (by id, by the last part of a hub name,
    or by a registered alias) and checked against the weights: consistent iff the model keeps ≥
    ``RECOGNISE_COSINE`` of the claimed base's weights."""
    rows = pool.registry.models()
    for name in names:
        match = next((r.id for r in rows if name in (r.id, *r.tags.get("aliases", [])) or name.split("/")[-1] == r.id),
                     None)
        if match is not None:
            cos, shared = weight_cosine(model, pool.load(match)[0])
            return {"names": names, "id": match, "weight_cosine": cos,
                    "consistent": bool(shared and cos >= RECOGNISE_COSINE)}
    return {"names": names, "id": None, "weight_cosine": None, "consistent": None}


@SCORES.register("inheritance")
class Inheritance(PairScore):
    """How much of what the source owns beyond its recipe the suspect carries (1 = all: derived; ≤ 0.5: sibling)."""

    name = "inheritance"
    needs = "weights"
    handles_transfer = True
    reads_base = True
    param_specs = {"n_references": Range(1, 20), "seed": SEED, "min_base_cosine": Range(-1, 1)}

    def __init__(self, n_references: int = 3, seed: int = 2000, min_base_cosine: float = 0.5):
        self.n_references, self.seed, self.min_base_cosine = n_references, seed, min_base_cosine

    def siblings(self, pair: Pair, start: StartingPoint) -> list[nn.Module]:
        """A's recipe re-run from P with other seeds (cached with the source's generated models)."""
        a, base_card, relation, params = pair.source_card, start.card, start.relation, start.params
        cache = pair.cache.generated_dir(pair.source_key)
        out = []
        for j in range(self.n_references):
            seed = self.seed + j
            key = hashlib.sha256(json.dumps([a.sha256, base_card.sha256, relation, params, seed], sort_keys=True,
                                            default=str).encode()).hexdigest()[:12]
            ctx = RecipeContext(pair.source_data, parents=[start.model], parent_cards=[base_card], arch=a.arch,
                                arch_kwargs=dict(a.arch_kwargs), seed=seed, params=params)
            out.append(generated_model(cache / f"sibling-{j}-{key}" if cache else None, relation, ctx, a))
        return out

    def score(self, pair: Pair) -> ScoreResult:
        start = starting_point(pair)
        relation, where = start.relation, {"base": start.label, "base_found": start.found, "base_public": start.public}
        a, b, p = (m.state_dict() for m in (pair.source, pair.suspect, start.model))
        keys = [k for k in weight_names(pair.source) if k in b and k in p and a[k].shape == b[k].shape == p[k].shape]
        if not keys:
            raise NotApplicable("inheritance: source, suspect and base share no weight tensor of the same name and shape")
        g = gram([a, b, p], keys)
        base_cos = g[1, 2] / math.sqrt(max(g[1, 1] * g[2, 2], 1e-300))
        if base_cos < self.min_base_cosine:
            return self.result(0.0, base_cosine=base_cos, recipe=relation, shared_tensors=len(keys), **where)
        g = gram([a, b, p, *(m.state_dict() for m in self.siblings(pair, start))], keys)
        rho, extra = own_part(g, relation)
        return self.result(rho, base_cosine=base_cos, recipe=relation, shared_tensors=len(keys), **extra, **where)


def own_part(g: np.ndarray, relation: str) -> tuple[float, dict]:
    """ρ = mean_j ρ_j and its details, from the Gram matrix of (A, B, P, A'_1..A'_n) in any vector space (weights,
    or outputs for ``lm_inheritance``): each vector is a coefficient row over those models."""
    n = len(g) - 3
    dot = lambda x, y: float(x @ g @ y)  # noqa: E731
    A, B, P, *R = np.eye(3 + n)
    t = sum(R) / n - P
    t = t / math.sqrt(max(dot(t, t), 1e-300))
    rho, own = [], []
    for r in R:
        d, e = A - r, B - r  # A − A'_j and B − A'_j; u_j is d with the task direction t projected out
        uu = dot(d, d) - dot(d, t) ** 2
        if uu <= 1e-12 * dot(A, A):
            raise NotApplicable(f"inheritance: the source owns nothing beyond its starting point and recipe "
                                f"({relation}): nothing tells its children from its siblings")
        rho.append((dot(e, d) - dot(d, t) * dot(e, t)) / uu)
        own.append(math.sqrt(uu))
    task, moved = A - P, B - P
    cos = dot(moved, task) / math.sqrt(max(dot(moved, moved) * dot(task, task), 1e-300))
    own_norm = sum(own) / len(own)
    # drift = |B − A| / |A's own part|: far above 1, ρ's noise swamps the signal (sibling and child alike)
    return sum(rho) / len(rho), {"per_reference": rho, "task_vector_cosine": cos,
                                 "own_fraction": own_norm / math.sqrt(max(dot(task, task), 1e-300)),
                                 "drift": math.sqrt(max(dot(B - A, B - A), 0.0)) / max(own_norm, 1e-30)}
