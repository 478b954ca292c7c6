"""Gram DNA: a model's penultimate features on N inputs as a centred Gram matrix K̃ = HFFᵀH, flattened and
L2-normalised, so that the inner product of two such vectors is their linear CKA whatever the
architectures and label orders; a fixed seeded Gaussian projection (Johnson-Lindenstrauss) takes the
N² entries to ``dim`` dimensions. The DNA index's default kind and the ``dna`` pair score."""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from mgmp.representations.outputs import query
from model_pool.errors import BadInput
from model_pool.train import predict

DIM, SEED = 128, 0


@functools.lru_cache(maxsize=8)
def _projection(n: int, dim: int, seed: int) -> torch.Tensor:
    """The fixed Gaussian projection (n², dim), made once per process (it is the same for every model)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n * n, dim, generator=g, dtype=torch.float64) / dim**0.5


@torch.no_grad()
def gram_dna(model: nn.Module, x: torch.Tensor, dim: int = DIM, seed: int = SEED) -> np.ndarray:
    """JL-projected, L2-normalised centred Gram matrix of the model's features on ``x``."""
    try:
        f = predict(model, x, features=True).double()
    except AttributeError:  # a model without forward_features: its outputs stand in
        f = query(model, x).double()
    if not torch.isfinite(f).all():
        raise BadInput("the model's features contain NaN or inf")
    f = f - f.mean(0)
    k = (f @ f.T).flatten()
    k = k / k.norm().clamp_min(1e-12)
    v = k @ _projection(len(x), dim, seed)
    return (v / v.norm().clamp_min(1e-12)).float().numpy()
