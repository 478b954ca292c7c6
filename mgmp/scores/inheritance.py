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

import torch
from torch import nn

from mgmp.representations.weights import weight_tensors
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from mgmp.scores.references import generated_model
from model_pool.card import ModelCard
from model_pool.errors import NotApplicable
from model_pool.params import SEED, Range
from model_pool.recipes import RecipeContext

TRAINED = ("finetune", "finetune_last", "adapter", "scratch")  # recipes whose result depends on the seed
DEFAULT_RECIPE = ("finetune", {"epochs": 2, "lr": 1e-3})  # for a source whose recipe is not recorded


def starting_point(pair: Pair) -> tuple[nn.Module, ModelCard, str, dict]:
    """P and the recipe that made A from it: the pair's ``base`` (a root "trained from scratch" on top of it, i.e.
    initialised from a pretrained backbone, is re-run as a fine-tune of it), else A's registered parent."""
    card = pair.source_card
    relation, params = card.relation, dict(card.recipe.get("params", {}))
    if pair.base is not None:
        if relation not in TRAINED:
            relation, params = DEFAULT_RECIPE[0], dict(DEFAULT_RECIPE[1])
        return pair.base, pair.base_card, "finetune" if relation == "scratch" else relation, params
    parents = pair.pool.registry.parents(pair.source_id) if pair.pool is not None and pair.source_id else []
    if len(parents) == 1 and relation in TRAINED and relation != "scratch":
        model, parent_card = pair.pool.load(parents[0])
        return model, parent_card, relation, params
    raise NotApplicable("inheritance needs the source's starting point: a registered parent it was trained from, "
                        "or the backbone it was initialised from as --base MODEL")


@SCORES.register("inheritance")
class Inheritance(PairScore):
    """How much of what the source owns beyond its recipe the suspect carries (1 = all: derived; ≤ 0.5: sibling)."""

    name = "inheritance"
    needs = "weights"
    handles_transfer = True
    param_specs = {"n_references": Range(1, 20), "seed": SEED, "min_base_cosine": Range(-1, 1)}

    def __init__(self, n_references: int = 3, seed: int = 2000, min_base_cosine: float = 0.5):
        self.n_references, self.seed, self.min_base_cosine = n_references, seed, min_base_cosine

    def siblings(self, pair: Pair, base: nn.Module, base_card: ModelCard, relation: str, params: dict) -> list[nn.Module]:
        """A's recipe re-run from P with other seeds (cached with the source's generated models)."""
        a = pair.source_card
        cache = pair.cache.generated_dir(pair.source_key)
        out = []
        for j in range(self.n_references):
            seed = self.seed + j
            key = hashlib.sha256(json.dumps([a.sha256, base_card.sha256, relation, params, seed], sort_keys=True,
                                            default=str).encode()).hexdigest()[:12]
            ctx = RecipeContext(pair.source_data, parents=[base], parent_cards=[base_card], arch=a.arch,
                                arch_kwargs=dict(a.arch_kwargs), seed=seed, params=params)
            out.append(generated_model(cache / f"sibling-{j}-{key}" if cache else None, relation, ctx, a))
        return out

    def score(self, pair: Pair) -> ScoreResult:
        base, base_card, relation, params = starting_point(pair)
        wa, wb, wp = weight_tensors(pair.source), weight_tensors(pair.suspect), weight_tensors(base)
        keys = [k for k in wa if k in wb and k in wp and wa[k].shape == wb[k].shape == wp[k].shape]
        if not keys:
            raise NotApplicable("inheritance: source, suspect and base share no weight tensor of the same name and shape")
        flat = lambda w: torch.cat([w[k].flatten() for k in keys])  # noqa: E731
        a, b, p = flat(wa), flat(wb), flat(wp)
        base_cos = float(b @ p / (b.norm() * p.norm()).clamp_min(1e-30))
        if base_cos < self.min_base_cosine:
            return self.result(0.0, base_cosine=base_cos, recipe=relation, shared_tensors=len(keys))
        refs = [flat(weight_tensors(m)) for m in self.siblings(pair, base, base_card, relation, params)]
        t = torch.stack(refs).mean(0) - p
        t = t / t.norm().clamp_min(1e-30)
        rho, own = [], []
        for r in refs:
            u = a - r
            u = u - (u @ t) * t
            if float(u @ u) <= 1e-12 * float(a @ a):
                raise NotApplicable(f"inheritance: the source owns nothing beyond its starting point and recipe "
                                    f"({relation}): nothing tells its children from its siblings")
            rho.append(float((b - r) @ u / (u @ u)))
            own.append(float(u.norm()))
        task = a - p
        cos = float((b - p) @ task / ((b - p).norm() * task.norm()).clamp_min(1e-30))
        own_norm = sum(own) / len(own)
        # drift = |B − A| / |A's own part|: far above 1, ρ's noise swamps the signal (sibling and child alike)
        return self.result(sum(rho) / len(rho), per_reference=rho, task_vector_cosine=cos, base_cosine=base_cos,
                           own_fraction=own_norm / float(task.norm().clamp_min(1e-30)),
                           drift=float((b - a).norm()) / max(own_norm, 1e-30), recipe=relation, shared_tensors=len(keys))
