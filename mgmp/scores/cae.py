"""Conferrable adversarial examples (CAE; Lukas, Zhang, Kerschbaum, ICLR 2021): a fingerprint of inputs that the
source's surrogates label as the source does and independently trained models do not.

Generation, once per source (cached with the source's sha256, the data name and the params hash): the shared
reference stage (:mod:`mgmp.scores.references`) gives ``n_surrogates`` surrogates S (distillation into the
source's architecture, extraction into the other one) and ``n_independent`` independents R (from scratch in the
same architectures). From ``n_candidates`` seeded source test points x0, all candidates at once, Adam on x'
within ``eps`` (a fraction of the input range, L-inf, clamped to the range) minimises the paper's CEM loss
    α·H(1, σ_t(x')) + β·H(1, 1 − M(x')_{y0}) + γ·H(M(x'), S̄(x')),
with σ_t(x') = S̄(x')_t · (1 − R̄(x')_t) the conferrability of class t (S̄, R̄: mean softmax of S and R), t the
source's label on x' once it differs from y0 = its label on x0 (else the most conferrable other class), H the
cross-entropy. The ``n_fingerprints`` candidates of highest σ_y (y: the source's label on x') that are
adversarial for the source (y ≠ y0) and reach ``min_conferrability`` are kept, with y. Score: CAEAcc, the
fraction of fingerprints the suspect (queried for labels only) labels y. Fewer survivors are kept and counted
in ``n_fingerprints``; none: NotApplicable (a rate over no input would be no evidence).

Defaults (paper / ours, and why; the paper's text could not be read here, its values below are from public
ports): ε 0.2 in a port, small on CINIC in the paper / 0.1 of the input range: on the 8x8 digits ~30-45% of the
candidates become adversarial for the source within 0.1, and a smaller ε leaves a handful; α = β = γ = 1 (one
port; another 1, 0.1, 0.1); τ (min_conferrability, the least conferrability of a CAE: 0.85-0.9 in the ports) /
0.25: with 4 + 4 small references the mean-softmax σ of the source's adversarial examples rarely exceeds 0.45 on
the digits, so τ keeps the more conferrable half; 100 fingerprints (paper: 100) from 500 candidates (all 360
digits test points) and 100 Adam steps at lr 0.01 (a port: up to 1,000 SGD steps per example): seconds per
source on the digits; 4 surrogates (all the stage has for two architectures; the paper: many, in several
architectures) and 4 independents. Deviations: the paper's −β·H(M(x0), M(x')) is unbounded and swamped the
other terms in our runs, so the source is pushed off y0 by the bounded H(1, 1 − M(x')_{y0}); σ_t replaces
max_t of the softmax of S̄ ⊙ (1 − R̄) (a softmax over values in [0, 1] is nearly flat); no dropout on the
ensemble members (with 4 + 4 references it did not help in our runs); the candidates are all test points, not
only correctly classified ones.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from mgmp.representations.outputs import labels, model_device
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from mgmp.scores.baselines import _require_image
from mgmp.scores.references import build_references, reference_specs
from model_pool.card import ModelCard
from model_pool.data.base import TaskData
from model_pool.errors import NotApplicable
from model_pool.params import SEED, Range

CHUNK = 1024  # candidates optimised together: the loss is a sum over candidates and Adam acts per coordinate,
# so chunks give the same result as one batch, in bounded memory


def _probs(models: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Mean softmax of ``models`` on ``x`` (differentiable in ``x``)."""
    return torch.stack([m(x.to(model_device(m))).softmax(1).to(x.device) for m in models]).mean(0)


def _xent(p: torch.Tensor) -> torch.Tensor:
    """H(1, p) = −log p, bounded where p vanishes."""
    return -p.clamp_min(1e-12).log()


@SCORES.register("cae")
class CAE(PairScore):
    """CAEAcc: the fraction of the source's conferrable adversarial examples the suspect labels as the source."""

    name = "cae"
    needs = "labels"
    higher_is_related = True
    param_specs = {"n_fingerprints": Range(1, 100_000), "n_candidates": Range(1, 1_000_000),
                   "eps": Range(0, 1, open_lo=True), "steps": Range(1, 10_000), "lr": Range(0, 10, open_lo=True),
                   "n_surrogates": Range(1, 10), "n_independent": Range(1, 100), "min_conferrability": Range(0, 1),
                   "alpha": Range(0, 1000), "beta": Range(0, 1000), "gamma": Range(0, 1000), "seed": SEED}

    def __init__(self, n_fingerprints: int = 100, n_candidates: int = 500, eps: float = 0.1, steps: int = 100,
                 lr: float = 0.01, n_surrogates: int = 4, n_independent: int = 4, min_conferrability: float = 0.25,
                 alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0, seed: int = 2000):
        self.n_fingerprints, self.n_candidates, self.eps = n_fingerprints, n_candidates, eps
        self.steps, self.lr = steps, lr
        self.n_surrogates, self.n_independent, self.min_conferrability = n_surrogates, n_independent, min_conferrability
        self.alpha, self.beta, self.gamma, self.seed = alpha, beta, gamma, seed

    # -- references and candidates ----------------------------------------------------------------
    def references(self, card: ModelCard) -> tuple[list, list]:
        """The surrogate and independent specs (seeds ``seed`` and ``seed + 100``: at the defaults, generated's too)."""
        return (reference_specs(card, "surrogate", self.n_surrogates, self.seed),
                reference_specs(card, "independent-surrogate", self.n_independent, self.seed + 100))

    def candidates(self, data: TaskData) -> torch.Tensor:
        """The starting points x0: ``n_candidates`` seeded source test points."""
        x = data.x_test
        return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[: self.n_candidates]]

    # -- generation --------------------------------------------------------------------------------
    def fingerprints(self, pair: Pair) -> torch.Tensor:
        """(N, D + 3) rows [x' flattened, candidate index, source label, σ], once per source (cached)."""
        card, data = pair.source_card, pair.source_data
        key = hashlib.sha256(f"{card.sha256}|{data.name}|{pair.source_key or ''}|{self.params_hash()}".encode())
        name = f"cae-fingerprints-{key.hexdigest()[:16]}" if card.sha256 else None
        cache_dir = pair.cache.generated_dir(pair.source_key)
        return pair.cache.tensor(name, "fingerprints", lambda: self._generate(pair.source, card, data, cache_dir))

    def _generate(self, source: nn.Module, card: ModelCard, data: TaskData, cache_dir) -> torch.Tensor:
        surrogate_specs, independent_specs = self.references(card)
        surrogates = build_references(source, card, data, surrogate_specs, cache_dir)
        independents = build_references(source, card, data, independent_specs, cache_dir)
        lo, hi = (float(v) for v in card.input.get("range", [0.0, 1.0]))
        x0 = self.candidates(data).float()
        y0 = labels(source, x0)
        adv = torch.cat([self._optimise(source, surrogates, independents, x, y, lo, hi)
                         for x, y in zip(x0.split(CHUNK), y0.split(CHUNK))])
        y = labels(source, adv)
        with torch.no_grad():
            sigma = (_probs(surrogates, adv) * (1 - _probs(independents, adv))).gather(1, y[:, None])[:, 0]
        keep = torch.nonzero((y != y0) & (sigma >= self.min_conferrability))[:, 0]
        keep = keep[sigma[keep].argsort(descending=True, stable=True)][: self.n_fingerprints]
        return torch.cat([adv[keep].flatten(1), keep[:, None].float(), y[keep, None].float(), sigma[keep, None]], 1)

    def _optimise(self, source: nn.Module, surrogates: list[nn.Module], independents: list[nn.Module],
                  x0: torch.Tensor, y0: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        """Adam on x' within ``eps`` of ``x0`` (and the input range) on the CEM loss; all points at once."""
        bound = self.eps * (hi - lo)
        delta = torch.zeros_like(x0, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=self.lr)
        rows = torch.arange(len(x0))
        device = model_device(source)
        for _ in range(self.steps):
            x = x0 + delta
            p_m = source(x.to(device)).softmax(1).to(x.device)
            p_s = _probs(surrogates, x)
            sigma = p_s * (1 - _probs(independents, x))
            with torch.no_grad():  # target: the source's label once adversarial, else the most conferrable other
                y = p_m.argmax(1)
                t = torch.where(y != y0, y, sigma.scatter(1, y0[:, None], -1.0).argmax(1))
            loss = (self.alpha * _xent(sigma[rows, t]) + self.beta * _xent(1 - p_m[rows, y0])
                    - self.gamma * (p_m * p_s.clamp_min(1e-12).log()).sum(1)).sum()
            (delta.grad,) = torch.autograd.grad(loss, delta)  # the inputs' gradient only: no model's grads
            opt.step()
            with torch.no_grad():
                delta.clamp_(-bound, bound)
                delta.copy_((x0 + delta).clamp(lo, hi) - x0)
        return (x0 + delta).detach()

    # -- the score ---------------------------------------------------------------------------------
    def score(self, pair: Pair) -> ScoreResult:
        _require_image(pair, self.name)
        if not pair.same_task:
            raise NotApplicable("cae compares labels in the source's label space: the suspect's output space differs "
                                "from the source's")
        fp = self.fingerprints(pair)
        if len(fp) == 0:
            raise NotApplicable(f"cae: none of the source's {self.n_candidates} candidates became a conferrable "
                                f"adversarial example (adversarial, conferrability >= {self.min_conferrability}); "
                                "raise eps, steps or n_candidates, or lower min_conferrability")
        x = fp[:, :-3].reshape(len(fp), *pair.source_data.x_test.shape[1:])
        y = fp[:, -2].long()
        surrogate_specs, independent_specs = self.references(pair.source_card)
        return self.result(float((labels(pair.suspect, x) == y).float().mean()), n_fingerprints=len(fp),
                           conferrability=float(fp[:, -1].mean()),
                           references=[r.to_dict() for r in surrogate_specs + independent_specs],
                           generation=self.params())
