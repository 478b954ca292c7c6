"""Per-model weight statistics whose change along an edge tells its direction.

MoTHer (Horwitz et al., ICLR 2025): fine-tuning raises the kurtosis of the weights (outliers grow), so a
child's kurtosis exceeds its parent's. Compression leaves its own marks: pruning adds exact zeros, quantisation
shrinks the set of distinct values (the value grid). Computed once per model over its ≥ 2-D float weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mgmp.representations.weights import weight_tensors


@dataclass(frozen=True)
class WeightSignature:
    """``kurtosis``: mean excess kurtosis per weight tensor; ``zeros``: fraction of exact zeros; ``grid``: mean
    fraction of distinct values per tensor (1 for float weights, ≤ 256/numel after int8); ``classes``: outputs."""

    kurtosis: float
    zeros: float
    grid: float
    classes: int

    def to_dict(self) -> dict:
        return asdict(self)


def excess_kurtosis(w: torch.Tensor) -> float:
    """Fisher's excess kurtosis of the entries of ``w`` (0 for a Gaussian)."""
    x = w.flatten().double()
    centred = x - x.mean()
    var = centred.square().mean()
    return float(centred.pow(4).mean() / var.square().clamp_min(1e-300) - 3.0)


def weight_signature(model: nn.Module, classes: int) -> WeightSignature:
    tensors = [w for w in weight_tensors(model).values() if w.numel() > 1]
    if not tensors:
        return WeightSignature(0.0, 0.0, 1.0, classes)
    n = sum(w.numel() for w in tensors)
    return WeightSignature(
        kurtosis=sum(excess_kurtosis(w) for w in tensors) / len(tensors),
        zeros=sum(int((w == 0).sum()) for w in tensors) / n,
        grid=sum(torch.unique(w).numel() / w.numel() for w in tensors) / len(tensors),
        classes=classes,
    )
