"""Lineage closeness (AAAI 2025): agreement of decision boundaries along the source's gradient sign.

For each test point x: direction g = sign(∇_x CE(M_s(x), M_s(x))); d_f, d_g = distance to the first
label change of the source and of the suspect along g (batched bisection, capped at d_max in the
model's input space; the suspect is only queried for labels). x matches when both models agree at
x and at their boundary crossings (eq. 4); Mr = matches / N, d̄ = mean |d_f − d_g| / d_max over
matches, s = (1 − d̄)·Mr. Test-set generation keeps points that generated lineage models match and
generated independent models do not, then the K most mutually different of them. Indirect
measurement (other output space): a copy of the source gets a new head trained on the suspect's
task, and that copy is measured against the suspect on the suspect's data.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from mgmp.representations.outputs import labels
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from mgmp.scores.boundary import boundary_distance
from mgmp.scores.indirect import indirect_pair
from mgmp.scores.references import LINEAGE, reference_models
from model_pool.attacks import input_grad_sign
from model_pool.card import ModelCard
from model_pool.data.base import TaskData
from model_pool.errors import NotApplicable
from model_pool.params import SEED, Choice, Range
from model_pool.pool import TensorCache, user_cache


@dataclass
class Match:
    """Per-point result of the matching rule between a source and one compared model."""

    matched: torch.Tensor  # bool (N,)
    gap: torch.Tensor  # |d_f - d_g| / d_max, (N,)

    @property
    def rate(self) -> float:
        return float(self.matched.float().mean())

    @property
    def mean_gap(self) -> float:
        return float(self.gap[self.matched].mean()) if self.matched.any() else 1.0

    @property
    def closeness(self) -> float:
        return (1.0 - self.mean_gap) * self.rate


def farthest_points(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` mutually distant rows of ``x`` (greedy farthest-point selection, first row first)."""
    flat = x.flatten(1).float()
    k = min(k, len(flat))
    chosen = [0]
    dist = (flat - flat[0]).norm(dim=1)
    for _ in range(k - 1):
        i = int(dist.argmax())
        chosen.append(i)
        dist = torch.minimum(dist, (flat - flat[i]).norm(dim=1))
    return torch.tensor(chosen)


@SCORES.register("closeness")
class Closeness(PairScore):
    """Lineage closeness s in [0, 1] (1 = unmodified); see the module docstring."""

    name = "closeness"
    needs = "labels"
    handles_transfer = True
    measures_closeness = True
    param_specs = {"k": Range(1, 100_000), "d_max": Range(0, 1000, open_lo=True), "steps": Range(1, 1000),
                   "iters": Range(0, 64), "n_lineage": Range(0, len(LINEAGE)), "n_independent": Range(0, 100),
                   "candidates": Range(1, 1_000_000), "indirect": Choice("auto", "always", "never"),
                   "indirect_epochs": Range(1, 10_000), "seed": SEED}

    def __init__(self, k: int = 100, d_max: float = 1.0, steps: int = 16, iters: int = 10, generate: bool = True,
                 n_lineage: int = 2, n_independent: int = 2, candidates: int = 2000, indirect: str = "auto",
                 indirect_epochs: int = 5, seed: int = 0):
        self.k, self.d_max, self.steps, self.iters = k, d_max, steps, iters
        self.generate, self.n_lineage, self.n_independent, self.candidates = generate, n_lineage, n_independent, candidates
        self.indirect, self.indirect_epochs, self.seed = indirect, indirect_epochs, seed

    # -- the batched primitives -------------------------------------------------------------
    def direction(self, source: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return input_grad_sign(source, x, labels(source, x))

    def match(self, source: nn.Module, other: nn.Module, x: torch.Tensor, g: torch.Tensor,
              source_side: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> Match:
        """Eq. 4 for every point; ``other`` is only queried for labels."""
        y_s, d_s, far_s = source_side or self.source_side(source, x, g)
        y_o = labels(other, x)
        d_o, far_o = boundary_distance(lambda z: labels(other, z), x, g, self.d_max, self.steps, self.iters)
        ok = (y_s == y_o) & (far_s == far_o) & (d_s <= self.d_max) & (d_o <= self.d_max)
        gap = torch.where(ok, (d_s - d_o).abs() / self.d_max, torch.ones_like(d_s))
        return Match(ok, gap)

    def source_side(self, source: nn.Module, x: torch.Tensor, g: torch.Tensor):
        d, far = boundary_distance(lambda z: labels(source, z), x, g, self.d_max, self.steps, self.iters)
        return labels(source, x), d, far

    # -- test sets ----------------------------------------------------------------------------
    def test_set(self, source: nn.Module, card: ModelCard, data: TaskData, cache: TensorCache | None = None,
                 source_key: str | None = None) -> torch.Tensor:
        """The K evaluation points: generated (filtered by reference models) or K seeded test points."""
        if not self.generate:
            g = torch.Generator().manual_seed(self.seed)
            return data.x_test[torch.randperm(len(data.x_test), generator=g)[: self.k]]
        key = hashlib.sha256(f"{card.sha256}|{data.name}|{source_key or ''}|{self.params_hash()}".encode()).hexdigest()[:16]
        cache = cache or user_cache()
        return cache.tensor(f"closeness-testset-{key}" if card.sha256 else None, "testsets",
                            lambda: self._generate(source, card, data, cache.generated_dir(source_key)))

    def _generate(self, source, card, data, cache_dir) -> torch.Tensor:
        x = torch.cat([data.x_test, data.x_train])[: self.candidates]
        g = self.direction(source, x)
        side = self.source_side(source, x, g)
        keep = torch.ones(len(x), dtype=torch.bool)
        for m in reference_models(source, card, data, "lineage", self.n_lineage, cache_dir=cache_dir):
            keep &= self.match(source, m, x, g, side).matched
        for m in reference_models(source, card, data, "independent", self.n_independent, cache_dir=cache_dir):
            keep &= ~self.match(source, m, x, g, side).matched
        survivors = x[keep]
        if len(survivors) == 0:
            survivors = x  # nothing separates: fall back to all candidates (reported by n_points)
        return survivors[farthest_points(survivors, self.k)]

    # -- the score ------------------------------------------------------------------------------
    def score(self, pair: Pair) -> ScoreResult:
        if pair.source_card.input.get("kind") != "image":
            raise NotApplicable("closeness searches boundaries in a continuous input space; text models take token ids")
        indirect = self.indirect == "always" or (self.indirect == "auto" and not pair.same_task)
        if indirect:
            pair = indirect_pair(pair, self.name, self.indirect_epochs, self.seed)
        x = self.test_set(pair.source, pair.source_card, pair.source_data, pair.cache, pair.source_key)
        g = pair.source_cached("closeness-direction", self.params(), lambda: self.direction(pair.source, x))
        side = pair.source_cached("closeness-source-side", self.params(),
                                  lambda: torch.stack([t.double() for t in self.source_side(pair.source, x, g)], 1))
        m = self.match(pair.source, pair.suspect, x, g, (side[:, 0].long(), side[:, 1].float(), side[:, 2].long()))
        return self.result(m.closeness, match_rate=m.rate, mean_gap=m.mean_gap, n_points=len(x), indirect=indirect,
                           generated=self.generate)
