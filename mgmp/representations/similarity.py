"""Training-free output similarities used as baselines beside learned provenance."""
from __future__ import annotations

import torch


def top1_agreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-point agreement of the arg-max labels of two output matrices (N, C) -> bool (N,)."""
    return a.argmax(1) == b.argmax(1)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) of two representations (N, D1), (N, D2) of the same points."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    num = (y.T @ x).norm() ** 2
    den = (x.T @ x).norm() * (y.T @ y).norm()
    return float(num / den) if den > 0 else 0.0
