"""Baselines of the benchmark tables (SPEC §6), each with its paper's idea and our stated defaults.

- ModelDiff (Li et al., ISSTA 2021): decision distance vector DDV_i = cosine distance between a
  model's outputs on x_i and on a perturbed x'_i; similarity = cosine similarity of the two DDVs.
  Pairs: 100 source test points, x' = one signed-gradient step (ε = 0.1 of the input range) on the
  source (the paper searches pairs by mutation; one gradient step is our cheaper stand-in).
  Label-agnostic, so it compares models of different output spaces.
- IPGuard (Cao et al., AsiaCCS 2021): fingerprints near the source's boundary, found by minimising
  ReLU(z_i − z_j + k) + ReLU(max_{t≠i,j} z_t − z_i) from real points (k = 0.5 on logits, 100
  points, 100 Adam steps); score = fraction the suspect labels as the source does.
- SAC (Guan et al., NeurIPS 2022): correlation matrices of a model's outputs over N samples
  (cosine similarity of every output pair); distance = mean |C_A − C_B|. ``mode="w"``: samples the
  source misclassifies (SAC-w); ``"c"`` (default): CutMix samples (SAC-c), which exist for any
  source. Label-agnostic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mgmp.representations.gram import gram_dna
from mgmp.representations.outputs import query
from mgmp.scores import SCORES
from mgmp.scores.base import Pair, PairScore, ScoreResult
from model_pool.attacks import input_grad_sign
from model_pool.errors import NotApplicable
from model_pool.params import SEED, Choice, Range


def _points(pair: Pair, n: int, seed: int) -> torch.Tensor:
    x = pair.source_data.x_test
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]]


def _require_image(pair: Pair, method: str) -> None:
    if pair.source_card.input.get("kind") != "image":
        raise NotApplicable(f"{method} perturbs continuous inputs; text models take token ids")


def _input_range(pair: Pair) -> float:
    lo, hi = pair.source_card.input.get("range", [0.0, 1.0])
    return float(hi - lo)


@SCORES.register("modeldiff")
class ModelDiff(PairScore):
    """Cosine similarity of decision distance vectors (higher = related)."""

    name = "modeldiff"
    handles_transfer = True
    param_specs = {"n_points": Range(1, 100_000), "eps": Range(0, 1, open_lo=True), "seed": SEED}

    def __init__(self, n_points: int = 100, eps: float = 0.1, seed: int = 0):
        self.n_points, self.eps, self.seed = n_points, eps, seed

    @staticmethod
    def ddv(model, x: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(query(model, x, probs=True), query(model, x2, probs=True), dim=1)

    def source_side(self, pair: Pair) -> torch.Tensor:
        """(2, N, ...) inputs and their gradient-sign perturbations, plus the source's DDV: once per source."""
        x = _points(pair, self.n_points, self.seed)
        x2 = x + self.eps * _input_range(pair) * input_grad_sign(pair.source, x, query(pair.source, x).argmax(1))
        return torch.stack([x, x2])

    def score(self, pair: Pair) -> ScoreResult:
        _require_image(pair, self.name)
        x, x2 = pair.source_cached("modeldiff-inputs", self.params(), lambda: self.source_side(pair))
        a = pair.source_cached("modeldiff-ddv", self.params(), lambda: self.ddv(pair.source, x, x2))
        b = self.ddv(pair.suspect, x, x2)
        return self.result(float(F.cosine_similarity(a.double(), b.double(), dim=0)))


@SCORES.register("ipguard")
class IPGuard(PairScore):
    """Matching rate on boundary fingerprints (higher = related); needs one label space."""

    name = "ipguard"
    needs = "labels"
    param_specs = {"n_points": Range(1, 100_000), "k": Range(0, 1000), "steps": Range(0, 10_000),
                   "lr": Range(0, 10, open_lo=True), "seed": SEED}

    def __init__(self, n_points: int = 100, k: float = 0.5, steps: int = 100, lr: float = 0.01, seed: int = 0):
        self.n_points, self.k, self.steps, self.lr, self.seed = n_points, k, steps, lr, seed

    def fingerprints(self, model, x: torch.Tensor, n_classes: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        i = torch.randint(n_classes, (len(x),), generator=g)
        j = (i + torch.randint(1, n_classes, (len(x),), generator=g)) % n_classes
        x = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=self.lr)
        rows = torch.arange(len(x))
        for _ in range(self.steps):
            z = model(x)
            zi, zj = z[rows, i], z[rows, j]
            others = z.scatter(1, torch.stack([i, j], 1), float("-inf")).amax(1)
            loss = (F.relu(zi - zj + self.k) + F.relu(others - zi)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return x.detach()

    def score(self, pair: Pair) -> ScoreResult:
        _require_image(pair, self.name)
        if not pair.same_task:
            raise NotApplicable("ipguard compares labels: the suspect's output space differs from the source's")
        fp = pair.source_cached("ipguard-fingerprints", self.params(), lambda: self.fingerprints(
            pair.source, _points(pair, self.n_points, self.seed), pair.source_card.num_classes))
        y_a = pair.source_cached("ipguard-labels", self.params(), lambda: query(pair.source, fp).argmax(1))
        y_b = query(pair.suspect, fp).argmax(1)
        return self.result(float((y_a == y_b).float().mean()))


def cutmix(x: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` CutMix images: a random box of one image pasted into another (area ~ U(0, 1))."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(len(x), (2, n), generator=g)
    h, w = x.shape[-2:]
    lam = torch.rand(n, generator=g)
    bh, bw = (h * (1 - lam).sqrt()).long(), (w * (1 - lam).sqrt()).long()
    cy, cx = (torch.rand(n, generator=g) * h).long(), (torch.rand(n, generator=g) * w).long()
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = ((ys >= (cy - bh // 2).view(-1, 1, 1)) & (ys < (cy + bh // 2).view(-1, 1, 1))
           & (xs >= (cx - bw // 2).view(-1, 1, 1)) & (xs < (cx + bw // 2).view(-1, 1, 1))).unsqueeze(1)
    return torch.where(box, x[b], x[a])


def correlation_matrix(out: torch.Tensor) -> torch.Tensor:
    z = F.normalize(out.double(), dim=1)
    return z @ z.T


@SCORES.register("sac")
class SAC(PairScore):
    """Mean absolute difference of sample correlation matrices (lower = related)."""

    name = "sac"
    higher_is_related = False
    handles_transfer = True
    param_specs = {"mode": Choice("w", "c"), "n_points": Range(2, 100_000), "seed": SEED}

    def __init__(self, mode: str = "c", n_points: int = 50, seed: int = 0):
        self.mode, self.n_points, self.seed = mode, n_points, seed

    def samples(self, pair: Pair) -> torch.Tensor:
        data = pair.source_data
        if self.mode == "c":
            _require_image(pair, "sac-c")
            return cutmix(data.x_test, self.n_points, self.seed)
        x = torch.cat([data.x_test, data.x_train])
        y = torch.cat([data.y_test, data.y_train])
        wrong = x[query(pair.source, x).argmax(1) != y]
        if len(wrong) < 2:
            raise NotApplicable("sac-w needs samples the source misclassifies; it has fewer than 2 (use mode c)")
        return wrong[: self.n_points]

    def score(self, pair: Pair) -> ScoreResult:
        x = pair.source_cached("sac-samples", self.params(), lambda: self.samples(pair))
        c_a = pair.source_cached("sac-correlation", self.params(), lambda: correlation_matrix(query(pair.source, x)))
        c_b = correlation_matrix(query(pair.suspect, x))
        return self.result(float((c_a - c_b).abs().mean()), n_samples=len(x))


@SCORES.register("dna")
class DNASimilarity(PairScore):
    """Inner product of the two models' ``gram`` DNA on source test inputs: ≈ linear CKA of their
    penultimate features (higher = related). The index's similarity, usable as a calibrated score."""

    name = "dna"
    needs = "features"
    handles_transfer = True
    param_specs = {"n_points": Range(3, 100_000), "seed": SEED}  # the centred Gram of 2 points is the same for any model

    def __init__(self, n_points: int = 64, seed: int = 0):
        self.n_points, self.seed = n_points, seed

    def score(self, pair: Pair) -> ScoreResult:
        x = _points(pair, self.n_points, self.seed)
        a = pair.source_cached("dna-gram", self.params(), lambda: torch.from_numpy(gram_dna(pair.source, x)))
        return self.result(float(a.numpy() @ gram_dna(pair.suspect, x)))
