"""Weight-space cosine, a baseline beside the four papers' methods: fine-tuning, pruning, quantization,
adapters and transfer keep the source's weights; models trained from their own initialisation
(independent, distilled, extracted) do not, so it is blind to distillation and extraction.

Both models' weight matrices (float tensors of ≥ 2 dims: convolution, linear and embedding weights;
normalisation and bias vectors start equal in every model) are aligned by parameter name and shape;
a tensor without a partner counts as orthogonal (a transferred model's new head lowers the cosine
by its share of the norm). ``weight_sketch`` is the same cosine for the index: a count sketch whose
hashes are seeded by (name, shape), so inner products of sketches estimate the cosine.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from mgmp.scores import SCORES
from mgmp.scores.base import NotApplicable, Pair, PairScore, ScoreResult


def weight_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weight matrices (float, ≥ 2 dims) by parameter name, as float64."""
    return {k: v.detach().double() for k, v in model.state_dict().items() if v.is_floating_point() and v.dim() >= 2}


def weight_cosine(a: nn.Module, b: nn.Module) -> tuple[float, int]:
    """Cosine of the two models' weight vectors aligned by (name, shape), and how many tensors aligned."""
    wa, wb = weight_tensors(a), weight_tensors(b)
    shared = [k for k in wa if k in wb and wa[k].shape == wb[k].shape]
    dot = sum(float((wa[k] * wb[k]).sum()) for k in shared)
    norm = np.sqrt(sum(float(v.square().sum()) for v in wa.values()) * sum(float(v.square().sum()) for v in wb.values()))
    return (dot / norm if norm > 0 else 0.0), len(shared)


def _tensor_seed(name: str, shape: torch.Size, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{name}:{tuple(shape)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@torch.no_grad()
def weight_sketch(model: nn.Module, dim: int = 256, seed: int = 0) -> np.ndarray:
    """L2-normalised count sketch of the model's weight matrices (inner product ≈ ``weight_cosine``)."""
    v = torch.zeros(dim, dtype=torch.float64)
    for name, w in weight_tensors(model).items():
        g = torch.Generator().manual_seed(_tensor_seed(name, w.shape, seed))
        flat = w.flatten()
        bucket = torch.randint(dim, flat.shape, generator=g)
        sign = torch.randint(2, flat.shape, generator=g, dtype=torch.float64).mul_(2).sub_(1)
        v.index_add_(0, bucket, flat * sign)
    return (v / v.norm().clamp_min(1e-12)).float().numpy()


@SCORES.register("weights")
class WeightCosine(PairScore):
    """Cosine of the two models' aligned weight matrices (higher = related); needs white-box suspects."""

    name = "weights"
    handles_transfer = True

    def score(self, pair: Pair) -> ScoreResult:
        cos, shared = weight_cosine(pair.source, pair.suspect)
        if shared == 0:
            raise NotApplicable("weights: the two models share no weight tensor of the same name and shape")
        return self.result(cos, shared_tensors=shared)
